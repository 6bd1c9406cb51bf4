/*-------------------------------------------------------------------------
 *
 * stock.c
 *		Escrow stock reservation (SPEC section 1): the SQL-callable
 *		functions.  The escrow counters they take from and give back to,
 *		with the per-transaction ledger, are in escrow.c (its header
 *		comment explains the method).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_class.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "common/int.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "escrow.h"
#include "privilege.h"
#include "reservation_rows.h"
#include "support.h"
#include "worker.h"

/*
 * On Citus, each node's reservation ids start at its node group shifted by
 * this many bits (pacelc.citus_setup()), so ids are unique across nodes.
 */
#define PACELC_NODE_ID_SHIFT	48

#define SKU_MAXLEN			PACELC_SKU_MAXLEN
#define MAX_CART			1000
#define STATE_MAXLEN		16

/* Saved SPI plans, prepared once per backend. */
enum
{
	PLAN_INSERT_RESERVATION,
	PLAN_KEY_LOOKUP,
	PLAN_KEY_INSERT,
	PLAN_DELETE_RESERVATIONS,
	PLAN_FIND_RESERVATION,
	PLAN_CONFIRM,
	PLAN_RELEASE,
	PLAN_LOCK_SKU,
	PLAN_CREATE_SKU,
	PLAN_UNFOLDED,
	PLAN_SET_BASE,
	PLAN_DUE_HOLDS,
	PLAN_EXPIRE,
	PLAN_ENQUEUE_EXPIRED,
	PLAN_STANDBY_AVAILABLE,
	PLAN_FOLD_SKU,
	PLAN_CHECK_SKUS,
	PLAN_CHECK_OPEN,
	/* the same for a database whose pacelc objects are older than 0.3 */
	PLAN_INSERT_RESERVATION_02,
	PLAN_KEY_LOOKUP_02,
	PLAN_FIND_RESERVATION_02,
	PLAN_KEY_INSERT_02,
	NUM_PLANS
};
static SPIPlanPtr plans[NUM_PLANS];

/* ---------------------------------------------------------------------
 * Argument checks
 * --------------------------------------------------------------------- */

/* Copies a SKU into a zero-padded key buffer, rejecting what cannot fit. */
static void
sku_from_text(text *t, char *buf)
{
	int			len = VARSIZE_ANY_EXHDR(t);

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sku must not be empty")));
	if (len > SKU_MAXLEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sku is too long"),
				 errdetail("A SKU may have at most %d bytes; this one has %d.",
						   SKU_MAXLEN, len)));
	memset(buf, 0, SKU_MAXLEN + 1);
	memcpy(buf, VARDATA_ANY(t), len);
	if (memchr(buf, '\0', len) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sku must not contain NUL bytes")));
}

static void
check_qty(int64 qty)
{
	if (qty <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("qty must be positive"),
				 errdetail("Got %lld.", (long long) qty)));
}

/* A ttl must end after now (mixed signs included), at most 100 years on. */
static void
check_ttl(Interval *ttl)
{
	if (ttl)
		(void) pacelc_future_timestamp(ttl, "ttl", false, 100);
}

/* Writers refuse with the ordinary read-only error, on standbys too. */
static void
check_writable(const char *what)
{
	pacelc_check_loaded();
	PreventCommandIfReadOnly(what);
}

/* ---------------------------------------------------------------------
 * SPI helpers
 * --------------------------------------------------------------------- */

static SPIPlanPtr
get_plan(int which, const char *sql, int nargs, Oid *argtypes)
{
	return pacelc_keep_plan(&plans[which], sql, nargs, argtypes);
}

static int
run_plan(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only)
{
	int			rc = SPI_execute_plan(plan, values, nulls, read_only, 0);

	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
	return rc;
}

static int64
spi_int64(int row, int col, bool *isnull)
{
	bool		null;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row],
								  SPI_tuptable->tupdesc, col, &null);

	if (isnull)
		*isnull = null;
	return null ? 0 : DatumGetInt64(d);
}

/*
 * The kept statement for the schema this database has: which (from sql)
 * from 0.3 on, which_02 (from sql_02) at 0.2.
 */
static SPIPlanPtr
get_schema_plan(int which, const char *sql, int which_02, const char *sql_02,
				int nargs, Oid *argtypes)
{
	if (pacelc_schema_03())
		return get_plan(which, sql, nargs, argtypes);
	return get_plan(which_02, sql_02, nargs, argtypes);
}

/*
 * Runs the kept statement which (prepared from sql the first time) in an
 * SPI connection of its own.  Returns whether it returned or changed a
 * row; with result, the first column of its first row (a bigint, 0 when
 * null).
 */
static bool
run_kept(int which, const char *sql, int nargs, Oid *argtypes, Datum *values,
		 bool read_only, int64 *result)
{
	bool		found;

	SPI_connect();
	run_plan(get_plan(which, sql, nargs, argtypes), values, NULL, read_only);
	found = SPI_processed > 0;
	if (found && result != NULL)
		*result = spi_int64(0, 1, NULL);
	SPI_finish();
	return found;
}

/* ---------------------------------------------------------------------
 * Idempotency keys
 * --------------------------------------------------------------------- */

/*
 * A key answers only the role that made its reservations (or one acting
 * for it): another application reusing the key must not be handed holds
 * that it may not confirm or release.
 */
static void
check_key_owner(text *key, Datum owner, bool isnull)
{
	if (!isnull && !pacelc_acts_for(pacelc_caller(), DatumGetObjectId(owner)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("idempotency key \"%s\" was already used by another role",
						text_to_cstring(key)),
				 errhint("Idempotency keys are shared by all applications of a database; prefix them, e.g. with the application's name.")));
}

/*
 * Looks the key up; returns the earlier answer (ids in request order) or
 * NULL.  A key reused for a different request is an error, not a silent
 * wrong answer.
 */
static ArrayType *
idempotent_answer(text *key, ArrayType *skus, ArrayType *qtys)
{
	Oid			argtypes[4] = {TEXTOID, TEXTARRAYOID, INT8ARRAYOID, OIDOID};
	SPIPlanPtr	plan;
	Datum		values[4] = {PointerGetDatum(key), PointerGetDatum(skus),
	PointerGetDatum(qtys), ObjectIdGetDatum(pacelc_caller())};
	Datum		result = (Datum) 0;
	bool		found = false;
	bool		isnull;

	/* a key's first use (the usual case) needs no lookup query */
	if (!pacelc_key_visible(key))
		return NULL;

	SPI_connect();
	/* a key is the caller's own (keys made before 0.3 have no owner) */
	plan = get_schema_plan(PLAN_KEY_LOOKUP,
						   "SELECT i.ids, i.skus = $2 AND i.qtys = $3, i.skus::pg_catalog.text,"
						   " i.qtys::pg_catalog.text,"
						   " (SELECT r.owner FROM pacelc.reservation_data r WHERE r.id = i.ids[1])"
						   "  FROM pacelc.idempotency_keys i"
						   " WHERE i.key = $1 AND (i.owner = $4 OR i.owner IS NULL)"
						   " ORDER BY i.owner NULLS LAST LIMIT 1",
						   PLAN_KEY_LOOKUP_02,
						   "SELECT i.ids, i.skus = $2 AND i.qtys = $3, i.skus::pg_catalog.text,"
						   " i.qtys::pg_catalog.text, NULL::pg_catalog.oid"
						   "  FROM pacelc.idempotency_keys i WHERE i.key = $1",
						   4, argtypes);
	run_plan(plan, values, NULL, false);
	if (SPI_processed > 0)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		check_key_owner(key, SPI_getbinval(tup, desc, 5, &isnull), isnull);
		if (!DatumGetBool(SPI_getbinval(tup, desc, 2, &isnull)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("idempotency key \"%s\" was already used for a different request",
							text_to_cstring(key)),
					 errdetail("It reserved %s with quantities %s.",
							   SPI_getvalue(tup, desc, 3),
							   SPI_getvalue(tup, desc, 4))));
		result = SPI_datumTransfer(SPI_getbinval(tup, desc, 1, &isnull), false, -1);
		found = true;
	}
	SPI_finish();
	/* detoast (short header) outside SPI's memory context */
	return found ? DatumGetArrayTypeP(result) : NULL;
}

/*
 * Records the key with its answer.  Returns false if a concurrent request
 * with the same key committed first (ON CONFLICT waits for it to finish).
 */
static bool
idempotent_record(text *key, ArrayType *skus, ArrayType *qtys, ArrayType *ids)
{
	Oid			argtypes[5] = {TEXTOID, TEXTARRAYOID, INT8ARRAYOID, INT8ARRAYOID, OIDOID};
	Datum		values[5] = {PointerGetDatum(key), PointerGetDatum(skus),
		PointerGetDatum(qtys), PointerGetDatum(ids),
	ObjectIdGetDatum(pacelc_caller())};
	bool		inserted;
	SPIPlanPtr	plan;

	if (pacelc_key_insert(key, skus, qtys, ids, pacelc_caller(), &inserted))
		return inserted;

	SPI_connect();
	plan = get_schema_plan(PLAN_KEY_INSERT,
						   "INSERT INTO pacelc.idempotency_keys (key, skus, qtys, ids, owner)"
						   " VALUES ($1, $2, $3, $4, $5::pg_catalog.regrole)"
						   " ON CONFLICT (key, owner) DO NOTHING",
						   PLAN_KEY_INSERT_02,
						   "INSERT INTO pacelc.idempotency_keys (key, skus, qtys, ids)"
						   " VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO NOTHING",
						   5, argtypes);
	run_plan(plan, values, NULL, false);
	inserted = SPI_processed > 0;
	SPI_finish();
	return inserted;
}

static void
delete_reservations(ArrayType *ids)
{
	Oid			argtypes[1] = {INT8ARRAYOID};
	Datum		values[1] = {PointerGetDatum(ids)};

	(void) run_kept(PLAN_DELETE_RESERVATIONS,
					"DELETE FROM pacelc.reservation_data WHERE id = ANY ($1)",
					1, argtypes, values, false, NULL);
}

/* ---------------------------------------------------------------------
 * Reserving
 * --------------------------------------------------------------------- */

static int64
insert_reservation(const char *sku, int64 qty, Interval *ttl, text *key,
				   Jsonb *on_expire)
{
	Oid			argtypes[6] = {TEXTOID, INT8OID, INTERVALOID, TEXTOID, JSONBOID, OIDOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	SPIPlanPtr	plan;
	int64		id;
	TimestampTz expires_at;

	/*
	 * A transaction id before the clock read that makes the expiry: the
	 * workers' expiry floor stays a second below the start of every
	 * transaction that holds one (pacelc_worker_expiry_floor()), but a
	 * DBA's trigger or CHECK constraint may run for long between that read
	 * and the insert, which would get the id only then.
	 */
	if (ttl != NULL)
		(void) GetTopTransactionId();

	/* the usual case: straight into the table and its indexes */
	if (pacelc_reservation_insert(sku, qty, ttl, key, (struct varlena *) on_expire,
								  pacelc_caller(), &id, &expires_at))
	{
		if (ttl != NULL)
			pacelc_worker_wake(MyDatabaseId, expires_at);
		return id;
	}

	SPI_connect();
	values[0] = CStringGetTextDatum(sku);
	values[1] = Int64GetDatum(qty);
	values[2] = PointerGetDatum(ttl);
	values[3] = PointerGetDatum(key);
	values[4] = PointerGetDatum(on_expire);
	values[5] = ObjectIdGetDatum(pacelc_caller());
	if (ttl == NULL)
		nulls[2] = 'n';
	if (key == NULL)
		nulls[3] = 'n';
	if (on_expire == NULL)
		nulls[4] = 'n';
	plan = get_schema_plan(PLAN_INSERT_RESERVATION,
						   "INSERT INTO pacelc.reservation_data"
						   " (sku, qty, expires_at, idempotency_key, on_expire, owner)"
						   " VALUES ($1, $2, clock_timestamp() + $3, $4, $5,"
						   "         $6::pg_catalog.regrole)"
						   " RETURNING id, expires_at",
						   PLAN_INSERT_RESERVATION_02,
						   "INSERT INTO pacelc.reservation_data"
						   " (sku, qty, expires_at, idempotency_key, on_expire)"
						   " VALUES ($1, $2, clock_timestamp() + $3, $4, $5)"
						   " RETURNING id, expires_at",
						   6, argtypes);
	run_plan(plan, values, nulls, false);
	id = spi_int64(0, 1, NULL);
	if (ttl != NULL)
	{
		bool		isnull;
		Datum		expires = SPI_getbinval(SPI_tuptable->vals[0],
											SPI_tuptable->tupdesc, 2, &isnull);

		if (!isnull)
			pacelc_worker_wake(MyDatabaseId, DatumGetTimestampTz(expires));
	}
	SPI_finish();
	return id;
}

static void
raise_insufficient(const char *sku, int64 qty, StockEntry *entry)
{
	int64		avail = pacelc_escrow_counter(entry);

	ereport(ERROR,
			(errcode(ERRCODE_PACELC_INSUFFICIENT_STOCK),
			 errmsg("insufficient stock for sku \"%s\"", sku),
			 errdetail("Requested %lld, available %lld.",
					   (long long) qty, (long long) Max(avail, 0))));
}

/*
 * Holds every line of a cart or none.  Escrow takes never wait, so no order
 * of SKUs can deadlock; a line that does not fit returns the earlier lines
 * at once.  Returns NULL when try_only and some line did not fit.
 */
static ArrayType *
reserve_lines(int n, char **skus, int64 *qtys, Interval *ttl, text *key,
			  Jsonb *on_expire, bool try_only)
{
	StockEntry **entries = palloc(n * sizeof(StockEntry *));
	uint64	   *gens = palloc(n * sizeof(uint64));
	Datum	   *ids = palloc(n * sizeof(Datum));
	Datum	   *sku_datums = palloc(n * sizeof(Datum));
	Datum	   *qty_datums = palloc(n * sizeof(Datum));
	ArrayType  *sku_array;
	ArrayType  *qty_array;
	ArrayType  *id_array;
	ArrayType  *earlier;
	int			mark;
	int			i;

	for (i = 0; i < n; i++)
	{
		sku_datums[i] = CStringGetTextDatum(skus[i]);
		qty_datums[i] = Int64GetDatum(qtys[i]);
	}
	sku_array = construct_array(sku_datums, n, TEXTOID, -1, false, TYPALIGN_INT);
	qty_array = construct_array(qty_datums, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);

	if (key && (earlier = idempotent_answer(key, sku_array, qty_array)) != NULL)
		return earlier;

	for (i = 0; i < n; i++)
		entries[i] = pacelc_stock_acquire(skus[i], false, &gens[i]);

	mark = pacelc_escrow_mark();
	for (i = 0; i < n; i++)
	{
		if (!pacelc_escrow_take(entries[i], gens[i], qtys[i]))
		{
			pacelc_escrow_undo_to(mark);
			if (try_only)
				return NULL;
			raise_insufficient(skus[i], qtys[i], entries[i]);
		}
	}

	for (i = 0; i < n; i++)
		ids[i] = Int64GetDatum(insert_reservation(skus[i], qtys[i], ttl, key, on_expire));
	id_array = construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);

	if (key && !idempotent_record(key, sku_array, qty_array, id_array))
	{
		/* the same request committed meanwhile: undo ours, answer with theirs */
		delete_reservations(id_array);
		pacelc_escrow_undo_to(mark);
		earlier = idempotent_answer(key, sku_array, qty_array);
		if (earlier == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not serialize access due to a concurrent request with idempotency key \"%s\"",
							text_to_cstring(key)),
					 errhint("Retry the transaction.")));
		return earlier;
	}
	return id_array;
}

/* reserve() and try_reserve(): one line through the cart path. */
static Datum
reserve_one(FunctionCallInfo fcinfo, bool try_only)
{
	char		sku[SKU_MAXLEN + 1];
	char	   *skus[1];
	int64		qty;
	Interval   *ttl;
	text	   *key;
	Jsonb	   *on_expire;
	ArrayType  *ids;

	check_writable(try_only ? "try_reserve()" : "reserve()");
	pacelc_require_arg(fcinfo, 0, "sku");
	pacelc_require_arg(fcinfo, 1, "qty");
	sku_from_text(PG_GETARG_TEXT_PP(0), sku);
	qty = PG_GETARG_INT64(1);
	check_qty(qty);
	ttl = PG_ARGISNULL(2) ? NULL : PG_GETARG_INTERVAL_P(2);
	check_ttl(ttl);
	key = PG_ARGISNULL(3) ? NULL : PG_GETARG_TEXT_PP(3);
	pacelc_check_key(key);
	on_expire = PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4);

	skus[0] = sku;
	ids = reserve_lines(1, skus, &qty, ttl, key, on_expire, try_only);
	if (ids == NULL)
		PG_RETURN_NULL();
	/* a one-element int8 array without nulls */
	PG_RETURN_INT64(((int64 *) ARR_DATA_PTR(ids))[0]);
}

static Datum
reserve_body(PG_FUNCTION_ARGS)
{
	return reserve_one(fcinfo, false);
}

static Datum
try_reserve_body(PG_FUNCTION_ARGS)
{
	return reserve_one(fcinfo, true);
}

static Datum
reserve_all_body(PG_FUNCTION_ARGS)
{
	ArrayType  *sku_arr;
	ArrayType  *qty_arr;
	Datum	   *sku_datums;
	Datum	   *qty_datums;
	bool	   *sku_nulls;
	bool	   *qty_nulls;
	int			nskus,
				nqtys,
				i,
				j;
	char	  **skus;
	int64	   *qtys;
	Interval   *ttl;
	text	   *key;
	Jsonb	   *on_expire;

	check_writable("reserve_all()");
	pacelc_require_arg(fcinfo, 0, "skus");
	pacelc_require_arg(fcinfo, 1, "qtys");
	sku_arr = PG_GETARG_ARRAYTYPE_P(0);
	qty_arr = PG_GETARG_ARRAYTYPE_P(1);
	if (ARR_NDIM(sku_arr) > 1 || ARR_NDIM(qty_arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("skus and qtys must be one-dimensional arrays")));
	deconstruct_array(sku_arr, TEXTOID, -1, false, TYPALIGN_INT,
					  &sku_datums, &sku_nulls, &nskus);
	deconstruct_array(qty_arr, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &qty_datums, &qty_nulls, &nqtys);
	if (nskus != nqtys)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("skus and qtys must have the same length"),
				 errdetail("skus has %d elements, qtys has %d.", nskus, nqtys)));
	if (nskus == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a cart must have at least one line")));
	if (nskus > MAX_CART)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a cart may have at most %d lines", MAX_CART)));

	skus = palloc(nskus * sizeof(char *));
	qtys = palloc(nskus * sizeof(int64));
	for (i = 0; i < nskus; i++)
	{
		if (sku_nulls[i] || qty_nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("skus and qtys must not contain nulls")));
		skus[i] = palloc(SKU_MAXLEN + 1);
		sku_from_text(DatumGetTextPP(sku_datums[i]), skus[i]);
		qtys[i] = DatumGetInt64(qty_datums[i]);
		check_qty(qtys[i]);
		for (j = 0; j < i; j++)
			if (strcmp(skus[i], skus[j]) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("sku \"%s\" appears more than once in the cart", skus[i]),
						 errhint("Add the quantities into one line.")));
	}
	ttl = PG_ARGISNULL(2) ? NULL : PG_GETARG_INTERVAL_P(2);
	check_ttl(ttl);
	key = PG_ARGISNULL(3) ? NULL : PG_GETARG_TEXT_PP(3);
	pacelc_check_key(key);
	on_expire = PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4);

	PG_RETURN_ARRAYTYPE_P(reserve_lines(nskus, skus, qtys, ttl, key, on_expire, false));
}

/* ---------------------------------------------------------------------
 * Ending a reservation
 * --------------------------------------------------------------------- */

/*
 * A reservation belongs to the role that made it: only that role, its
 * members and pacelc_admin may end it (the worker's expiry runs as the
 * owner of the extension).  Reservations made before 0.3 have no owner.
 */
static void
check_reservation_owner(int64 id, Oid owner)
{
	/*
	 * Another application's reservation: as if it did not exist.  A hold made
	 * before 0.3 has no owner and belongs to no application: only
	 * pacelc_admin ends it (or the worker, when its ttl passes).
	 */
	if (OidIsValid(owner) ? !pacelc_acts_for(pacelc_caller(), owner)
		: (pacelc_schema_03() && !pacelc_is_admin(pacelc_caller())))
		ereport(ERROR,
				(errcode(ERRCODE_PACELC_RESERVATION_NOT_ACTIVE),
				 errmsg("reservation %lld does not exist", (long long) id)));
}

/*
 * Reads a reservation's SKU, state and whether its ttl has passed; raises
 * PC003 if it does not exist, 42501 if it is not the caller's.
 */
static void
find_reservation(int64 id, char *sku, char *state, bool *expired)
{
	Oid			owner;

	Oid			argtypes[1] = {INT8OID};
	Datum		values[1];
	bool		isnull;

	SPI_connect();
	values[0] = Int64GetDatum(id);
	run_plan(get_schema_plan(PLAN_FIND_RESERVATION,
							 "SELECT sku, state, coalesce(expires_at <= clock_timestamp(), false),"
							 "       owner::pg_catalog.oid"
							 "  FROM pacelc.reservation_data WHERE id = $1",
							 PLAN_FIND_RESERVATION_02,
							 "SELECT sku, state, coalesce(expires_at <= clock_timestamp(), false),"
							 "       NULL::pg_catalog.oid"
							 "  FROM pacelc.reservation_data WHERE id = $1",
							 1, argtypes),
			 values, NULL, false);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PACELC_RESERVATION_NOT_ACTIVE),
				 errmsg("reservation %lld does not exist", (long long) id),
				 (id >> PACELC_NODE_ID_SHIFT) > 0 ?
				 errhint("Reservation ids from %lld on carry the Citus node group that made them in their high bits (this one: group %lld); "
						 "through the coordinator, call the two-argument form with the reservation's SKU.",
						 (long long) INT64CONST(1) << PACELC_NODE_ID_SHIFT,
						 (long long) (id >> PACELC_NODE_ID_SHIFT)) : 0));
	strlcpy(sku, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1),
			SKU_MAXLEN + 1);
	strlcpy(state, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2),
			STATE_MAXLEN);
	*expired = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 3, &isnull));
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 4, &isnull));
	SPI_finish();
	check_reservation_owner(id, isnull ? InvalidOid : owner);
}

/*
 * confirm(id, sku) and release(id, sku): the SKU routes the call to the
 * node that owns it (on Citus, see README "Scaling out with Citus"), and
 * the reservation must be of that SKU: a call that reached another row
 * of the same id is "does not exist", never that row.
 */
static void
check_reservation_sku(FunctionCallInfo fcinfo, int64 id, const char *sku)
{
	char		want[SKU_MAXLEN + 1];

	if (PG_NARGS() < 2)
		return;
	pacelc_require_arg(fcinfo, 1, "sku");
	sku_from_text(PG_GETARG_TEXT_PP(1), want);
	if (strcmp(want, sku) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_PACELC_RESERVATION_NOT_ACTIVE),
				 errmsg("reservation %lld does not exist", (long long) id),
				 errdetail("This node has no reservation %lld of SKU \"%s\".",
						   (long long) id, want)));
}

static void
raise_not_active(int64 id, const char *state, bool confirming)
{
	if (confirming)
		ereport(ERROR,
				(errcode(ERRCODE_PACELC_RESERVATION_NOT_ACTIVE),
				 errmsg("cannot confirm reservation %lld because it is not held",
						(long long) id),
				 errdetail("The reservation is %s.", state)));
	ereport(ERROR,
			(errcode(ERRCODE_PACELC_RESERVATION_NOT_ACTIVE),
			 errmsg("cannot release reservation %lld because it is not held",
					(long long) id),
			 errdetail("The reservation is %s.", state)));
}

/*
 * Moves a held reservation to new_state; returns its qty, or -1 when it was
 * no longer held (a concurrent confirm/release/expiry won the row).
 */
static int64
end_reservation(int plan_no, const char *sql, int64 id)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(id)};
	int64		qty = -1;

	(void) run_kept(plan_no, sql, 1, argtypes, values, false, &qty);
	return qty;
}

static Datum
confirm_body(PG_FUNCTION_ARGS)
{
	int64		id;
	char		sku[SKU_MAXLEN + 1];
	char		state[STATE_MAXLEN];
	bool		expired;

	check_writable("confirm()");
	pacelc_require_arg(fcinfo, 0, "id");
	id = PG_GETARG_INT64(0);
	find_reservation(id, sku, state, &expired);
	check_reservation_sku(fcinfo, id, sku);
	if (strcmp(state, "held") == 0 && expired)
		ereport(ERROR,
				(errcode(ERRCODE_PACELC_RESERVATION_NOT_ACTIVE),
				 errmsg("cannot confirm reservation %lld because it has expired",
						(long long) id),
				 errdetail("Its ttl has passed; its units go back to stock.")));

	/* confirm leaves on_hand - held unchanged: no escrow change needed */
	if (end_reservation(PLAN_CONFIRM,
						"UPDATE pacelc.reservation_data"
						"   SET state = 'confirmed', ended_at = clock_timestamp()"
						" WHERE id = $1 AND state = 'held'"
						"   AND (expires_at IS NULL OR expires_at > clock_timestamp())"
						" RETURNING qty", id) < 0)
	{
		find_reservation(id, sku, state, &expired);
		raise_not_active(id, strcmp(state, "held") == 0 ? "expired" : state, true);
	}
	PG_RETURN_VOID();
}

static Datum
release_body(PG_FUNCTION_ARGS)
{
	int64		id;
	char		sku[SKU_MAXLEN + 1];
	char		state[STATE_MAXLEN];
	bool		expired;
	StockEntry *entry;
	uint64		gen;
	int64		qty;

	check_writable("release()");
	pacelc_require_arg(fcinfo, 0, "id");
	id = PG_GETARG_INT64(0);
	find_reservation(id, sku, state, &expired);
	check_reservation_sku(fcinfo, id, sku);
	if (strcmp(state, "held") != 0)
		raise_not_active(id, state, false);

	/* the entry must be loaded before the row changes (see file header) */
	entry = pacelc_stock_acquire(sku, true, &gen);
	qty = end_reservation(PLAN_RELEASE,
						  "UPDATE pacelc.reservation_data"
						  "   SET state = 'released', ended_at = clock_timestamp()"
						  " WHERE id = $1 AND state = 'held' RETURNING qty", id);
	if (qty < 0)
	{
		find_reservation(id, sku, state, &expired);
		raise_not_active(id, state, false);
	}
	pacelc_escrow_add_on_commit(entry, gen, qty, false);
	PG_RETURN_VOID();
}

/* ---------------------------------------------------------------------
 * Stock levels
 * --------------------------------------------------------------------- */

/*
 * Locks the SKU row (creating it if asked) and returns on_hand_base and the
 * unfolded confirmed units.  The lock serializes restocks of one SKU with
 * each other and with fold_confirmed(), never with buyers.
 */
static bool
lock_sku(const char *sku, bool create, int64 *base, int64 *unfolded)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	bool		found;

	SPI_connect();
	values[0] = CStringGetTextDatum(sku);
	run_plan(get_plan(PLAN_LOCK_SKU,
					  "SELECT on_hand_base FROM pacelc.skus WHERE sku = $1 FOR UPDATE",
					  1, argtypes),
			 values, NULL, false);
	if (SPI_processed == 0 && create)
	{
		run_plan(get_plan(PLAN_CREATE_SKU,
						  "INSERT INTO pacelc.skus (sku, on_hand_base) VALUES ($1, 0)"
						  " ON CONFLICT (sku) DO NOTHING",
						  1, argtypes),
				 values, NULL, false);
		run_plan(plans[PLAN_LOCK_SKU], values, NULL, false);
	}
	found = SPI_processed > 0;
	if (found)
	{
		*base = spi_int64(0, 1, NULL);
		/* a new statement: in READ COMMITTED it sees every committed fold */
		run_plan(get_plan(PLAN_UNFOLDED,
						  "SELECT coalesce(sum(qty), 0)::pg_catalog.int8 FROM pacelc.reservation_data"
						  " WHERE sku = $1 AND state = 'confirmed' AND NOT folded",
						  1, argtypes),
				 values, NULL, false);
		*unfolded = spi_int64(0, 1, NULL);
	}
	SPI_finish();
	return found;
}

static void
set_base(const char *sku, int64 base)
{
	Oid			argtypes[2] = {TEXTOID, INT8OID};
	Datum		values[2] = {CStringGetTextDatum(sku), Int64GetDatum(base)};

	(void) run_kept(PLAN_SET_BASE,
					"UPDATE pacelc.skus SET on_hand_base = $2, updated_at = now()"
					" WHERE sku = $1",
					2, argtypes, values, false, NULL);
}

/*
 * Marks the confirmed units of one SKU folded, for a caller that holds the
 * SKU row lock and lowers on_hand_base by the units returned.  Only fold_confirmed() also folds, and it
 * holds the same row lock, so nothing here waits.
 */
static int64
fold_sku(const char *sku)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(sku)};
	int64		folded = 0;

	(void) run_kept(PLAN_FOLD_SKU,
					"WITH f AS (UPDATE pacelc.reservation_data r SET folded = true"
					"            WHERE r.sku = $1::pg_catalog.text"
					"              AND r.state = 'confirmed' AND NOT r.folded"
					"            RETURNING r.qty)"
					" SELECT pg_catalog.sum(f.qty)::pg_catalog.int8 FROM f",
					1, argtypes, values, false, &folded);
	return folded;
}

static void
raise_overflow(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
			 errmsg("stock count out of range for type bigint")));
}

/*
 * Changes on_hand of a locked SKU by delta.  A decrease must come out of
 * the escrow now (units that are held or being reserved cannot be written
 * off); an increase becomes available when the transaction commits.
 */
static int64
change_on_hand(const char *sku, StockEntry *entry, uint64 gen, int64 base,
			   int64 unfolded, int64 delta, bool created)
{
	int64		old_on_hand = base - unfolded;
	int64		new_on_hand;
	int64		new_base;

	if (pg_add_s64_overflow(old_on_hand, delta, &new_on_hand))
		raise_overflow();
	if (pg_add_s64_overflow(base, delta, &new_base))
	{
		/*
		 * The base also counts confirmed units not folded yet: fold this
		 * SKU's now (its row is locked), then decide on on_hand alone.
		 */
		base -= fold_sku(sku);
		if (pg_add_s64_overflow(base, delta, &new_base))
			raise_overflow();
	}
	if (new_on_hand < 0)
		ereport(ERROR,
				(errcode(ERRCODE_PACELC_INSUFFICIENT_STOCK),
				 errmsg("cannot reduce stock of sku \"%s\" below zero", sku),
				 errdetail("On hand is %lld, the change is %lld.",
						   (long long) old_on_hand, (long long) delta)));
	if (delta < 0 && !pacelc_escrow_take(entry, gen, -delta))
		ereport(ERROR,
				(errcode(ERRCODE_PACELC_INSUFFICIENT_STOCK),
				 errmsg("cannot reduce stock of sku \"%s\" by %lld", sku, (long long) -delta),
				 errdetail("Only %lld units are neither held nor being reserved.",
						   (long long) Max(pacelc_escrow_counter(entry), 0)),
				 errhint("Release or confirm reservations first.")));
	if (delta > 0 || created)
		pacelc_escrow_add_on_commit(entry, gen, Max(delta, 0), created);
	set_base(sku, new_base);
	return new_on_hand;
}

/*
 * set_stock(sku, on_hand) when "set", add_stock(sku, delta) otherwise:
 * returns the new on_hand.  set_stock() creates the SKU if need be.
 */
static int64
restock(FunctionCallInfo fcinfo, bool set)
{
	char		sku[SKU_MAXLEN + 1];
	int64		n;
	int64		base = 0,
				unfolded = 0;
	StockEntry *entry;
	uint64		gen;
	bool		created = false;

	check_writable(set ? "set_stock()" : "add_stock()");
	pacelc_require_arg(fcinfo, 0, "sku");
	pacelc_require_arg(fcinfo, 1, set ? "on_hand" : "delta");
	sku_from_text(PG_GETARG_TEXT_PP(0), sku);
	n = PG_GETARG_INT64(1);
	if (set && n < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("on_hand must not be negative"),
				 errdetail("Got %lld.", (long long) n)));

	entry = pacelc_stock_acquire(sku, set, &gen);
	if (set)
		created = !pacelc_escrow_sku_exists(entry);
	if (!lock_sku(sku, set, &base, &unfolded))
	{
		if (set)
			elog(ERROR, "could not create sku \"%s\"", sku);
		pacelc_raise_unknown_sku(sku);
	}
	return change_on_hand(sku, entry, gen, base, unfolded,
						  set ? n - (base - unfolded) : n, created);
}

static Datum
set_stock_body(PG_FUNCTION_ARGS)
{
	(void) restock(fcinfo, true);
	PG_RETURN_VOID();
}

static Datum
add_stock_body(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(restock(fcinfo, false));
}

/* On a standby there is no escrow: answer from the tables. */
static int64
available_from_tables(const char *sku)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(sku)};
	int64		avail = 0;

	if (!run_kept(PLAN_STANDBY_AVAILABLE,
				  "SELECT available FROM pacelc.stock WHERE sku = $1",
				  1, argtypes, values, true, &avail))
		pacelc_raise_unknown_sku(sku);
	return avail;
}

static Datum
available_body(PG_FUNCTION_ARGS)
{
	char		sku[SKU_MAXLEN + 1];
	StockEntry *entry;
	uint64		gen;
	int64		avail;

	pacelc_check_loaded();
	pacelc_require_arg(fcinfo, 0, "sku");
	sku_from_text(PG_GETARG_TEXT_PP(0), sku);
	if (RecoveryInProgress())
		PG_RETURN_INT64(available_from_tables(sku));

	/*
	 * What reserve() would let this transaction take: the counter plus what
	 * the transaction itself restocked or released and has not used yet.
	 */
	entry = pacelc_stock_acquire(sku, false, &gen);
	avail = pacelc_escrow_counter(entry);
	if (pg_add_s64_overflow(Max(avail, 0), pacelc_escrow_own_pending(entry, gen), &avail))
		avail = PG_INT64_MAX;
	PG_RETURN_INT64(Max(avail, 0));
}

/* verify()'s view of shared memory: the counter, or NULL if not loaded. */
PG_FUNCTION_INFO_V1(pacelc_escrow_available);
Datum
pacelc_escrow_available(PG_FUNCTION_ARGS)
{
	char		sku[SKU_MAXLEN + 1];
	int64		avail = 0;

	pacelc_stock_check_shmem();
	sku_from_text(PG_GETARG_TEXT_PP(0), sku);
	if (!pacelc_escrow_read_counter(sku, pacelc_skus_relid(), &avail))
		PG_RETURN_NULL();
	PG_RETURN_INT64(avail);
}

/*
 * verify()'s escrow audit: SKUs whose counter promises more units than the
 * tables allow.  Counter and tables cannot be read at one instant, and
 * reading them one after the other raises false alarms both ways round:
 * increases (release, expiry, restock) reach the counter just after their
 * commit, and takes (reserve, write-off) leave the counter just before
 * theirs.  So:
 *
 *	1. snapshot A: each SKU row (its on_hand_base and xmin) and the ids of
 *	   the open reservations (held, or confirmed and not folded);
 *	2. the counters, at a moment t;
 *	3. snapshot B, taken after t: the SKU rows again, and the open
 *	   reservations, counting only those that were open in A already.
 *
 * A SKU whose row changed between A and B (restock, write-off, fold) is
 * looked at again in another round, up to three; one that keeps changing
 * is left for the next call (a DEBUG1 message counts them).  For the others, the rows counted are a subset of
 * those open at t (states only move forward), and every change committed
 * before t that reached the counter is in B; so "tables" is at least the
 * committed on_hand - held at t, which a correct counter never exceeds.
 * An alarm is therefore a real excess, never a race.
 */
typedef struct CheckSku
{
	char		sku[SKU_MAXLEN + 1];	/* hash key */
	int64		base;
	char		xmin[16];
	bool		done;			/* checked in an earlier round */
	bool		loaded;
	bool		busy;
	int64		counter;
	int64		open_qty;
} CheckSku;

#define ESCROW_AUDIT_ROUNDS	3

static int
cmp_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return (x > y) - (x < y);
}

static void
check_run(SPIPlanPtr plan, Snapshot snap)
{
	int			rc = SPI_execute_snapshot(plan, NULL, NULL, snap, InvalidSnapshot,
										  true, false, 0);

	if (rc != SPI_OK_SELECT)
		elog(ERROR, "escrow audit query failed: %s", SPI_result_code_string(rc));
}

/*
 * One round of the audit over the SKUs not decided yet; returns how many
 * were busy (row changed between the two snapshots) and are left for the
 * next round.
 */
static int
escrow_audit_round(HTAB *checks, bool first, Oid relid, ReturnSetInfo *rsinfo,
				   int *nchecked)
{
	SPIPlanPtr	skus_plan;
	SPIPlanPtr	open_plan;
	Snapshot	snap;
	HASH_SEQ_STATUS status;
	CheckSku   *c;
	int64	   *ids;
	uint64		nids,
				i;
	int			nbusy = 0;

	skus_plan = get_plan(PLAN_CHECK_SKUS,
						 "SELECT k.sku, k.on_hand_base, k.xmin::pg_catalog.text"
						 "  FROM pacelc.skus k",
						 0, NULL);
	open_plan = get_plan(PLAN_CHECK_OPEN,
						 "SELECT r.id, r.sku, r.qty FROM pacelc.reservation_data r"
						 " WHERE r.state = 'held' OR (r.state = 'confirmed' AND NOT r.folded)",
						 0, NULL);

	/* 1. snapshot A: SKU rows and the ids of the open reservations */
	snap = RegisterSnapshot(GetLatestSnapshot());
	check_run(skus_plan, snap);
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *sku = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *xmin = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3);
		bool		found;

		if (strlen(sku) > SKU_MAXLEN)
			continue;
		c = hash_search(checks, sku, first ? HASH_ENTER : HASH_FIND, &found);
		if (c == NULL || (found && c->done))
			continue;
		c->base = spi_int64(i, 2, NULL);
		strlcpy(c->xmin, xmin, sizeof(c->xmin));
		c->done = false;
		c->loaded = false;
		c->busy = true;			/* until seen unchanged in snapshot B */
		c->counter = 0;
		c->open_qty = 0;
	}
	SPI_freetuptable(SPI_tuptable);
	check_run(open_plan, snap);
	nids = SPI_processed;
	ids = palloc(Max(nids, 1) * sizeof(int64));
	for (i = 0; i < nids; i++)
		ids[i] = spi_int64(i, 1, NULL);
	SPI_freetuptable(SPI_tuptable);
	qsort(ids, nids, sizeof(int64), cmp_int64);
	UnregisterSnapshot(snap);

	/* 2. the counters */
	hash_seq_init(&status, checks);
	while ((c = hash_seq_search(&status)) != NULL)
		if (!c->done)
			c->loaded = pacelc_escrow_read_counter(c->sku, relid, &c->counter);

	/* 3. snapshot B, after the counters */
	snap = RegisterSnapshot(GetLatestSnapshot());
	check_run(skus_plan, snap);
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *sku = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *xmin = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3);

		if (strlen(sku) > SKU_MAXLEN)
			continue;
		c = hash_search(checks, sku, HASH_FIND, NULL);
		if (c && !c->done)
			c->busy = (strcmp(c->xmin, xmin) != 0 ||
					   c->base != spi_int64(i, 2, NULL));
	}
	SPI_freetuptable(SPI_tuptable);
	check_run(open_plan, snap);
	for (i = 0; i < SPI_processed; i++)
	{
		int64		id = spi_int64(i, 1, NULL);
		char	   *sku;

		if (bsearch(&id, ids, nids, sizeof(int64), cmp_int64) == NULL)
			continue;			/* opened after snapshot A */
		sku = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		if (strlen(sku) > SKU_MAXLEN)
			continue;
		c = hash_search(checks, sku, HASH_FIND, NULL);
		if (c && !c->done)
			c->open_qty += spi_int64(i, 3, NULL);
	}
	SPI_freetuptable(SPI_tuptable);
	UnregisterSnapshot(snap);
	pfree(ids);

	hash_seq_init(&status, checks);
	while ((c = hash_seq_search(&status)) != NULL)
	{
		int64		tables = c->base - c->open_qty;

		if (c->done)
			continue;
		if (c->busy)
		{
			nbusy++;
			continue;
		}
		c->done = true;
		if (!c->loaded)
			continue;
		(*nchecked)++;
		if (c->counter > tables)
		{
			Datum		values[3];
			bool		nulls[3] = {false, false, false};

			values[0] = CStringGetTextDatum(c->sku);
			values[1] = Int64GetDatum(c->counter);
			values[2] = Int64GetDatum(tables);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	return nbusy;
}

PG_FUNCTION_INFO_V1(pacelc_escrow_excess);
Datum
pacelc_escrow_excess(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HASHCTL		ctl;
	HTAB	   *checks;
	Oid			relid;
	int			round,
				nbusy = 0,
				nchecked = 0;

	pacelc_require_internal(fcinfo);

	pacelc_stock_check_shmem();
	InitMaterializedSRF(fcinfo, 0);
	if (RecoveryInProgress())
		return (Datum) 0;		/* no escrow on a standby */
	relid = pacelc_skus_relid();
	/* prepared transactions that ended where no hook settled them */
	pacelc_escrow_settle_finished();

	SPI_connect();
	ctl.keysize = SKU_MAXLEN + 1;
	ctl.entrysize = sizeof(CheckSku);
	ctl.hcxt = CurrentMemoryContext;
	checks = hash_create("pacelc escrow audit", 1024, &ctl,
						 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	/* a SKU whose row changed meanwhile is looked at again, a few times */
	for (round = 0; round < ESCROW_AUDIT_ROUNDS; round++)
	{
		CHECK_FOR_INTERRUPTS();
		nbusy = escrow_audit_round(checks, round == 0, relid, rsinfo, &nchecked);
		if (nbusy == 0)
			break;
	}
	elog(DEBUG1, "pacelc escrow audit: %d counters checked, %d SKUs left unchecked (row changed during %d rounds)",
		 nchecked, nbusy, round < ESCROW_AUDIT_ROUNDS ? round + 1 : round);
	SPI_finish();
	return (Datum) 0;
}


/* ---------------------------------------------------------------------
 * Expiry
 * --------------------------------------------------------------------- */

/*
 * Expires one due hold: its units return at commit, and its on_expire
 * payload (with id, sku and qty) goes to the queue "expired" in the same
 * transaction.  Returns false if someone ended it first.
 */
static bool
expire_one(int64 id, const char *sku)
{
	Oid			argtypes[1] = {INT8OID};
	Oid			qargtypes[4] = {INT8OID, TEXTOID, INT8OID, JSONBOID};
	Datum		values[4];
	StockEntry *entry;
	uint64		gen;
	int64		qty;
	bool		isnull;
	Datum		payload;

	entry = pacelc_stock_acquire(sku, true, &gen);

	SPI_connect();
	values[0] = Int64GetDatum(id);
	run_plan(get_plan(PLAN_EXPIRE,
					  "UPDATE pacelc.reservation_data"
					  "   SET state = 'expired', ended_at = clock_timestamp()"
					  " WHERE id = $1 AND state = 'held' RETURNING qty, on_expire",
					  1, argtypes),
			 values, NULL, false);
	if (SPI_processed == 0)
	{
		SPI_finish();
		return false;
	}
	qty = spi_int64(0, 1, NULL);
	payload = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	pacelc_escrow_add_on_commit(entry, gen, qty, false);
	if (!isnull)
	{
		values[0] = Int64GetDatum(id);
		values[1] = CStringGetTextDatum(sku);
		values[2] = Int64GetDatum(qty);
		values[3] = payload;
		run_plan(get_plan(PLAN_ENQUEUE_EXPIRED,
						  "SELECT pacelc.enqueue('expired',"
						  " jsonb_build_object('reservation_id', $1, 'sku', $2,"
						  "                    'qty', $3, 'payload', $4))",
						  4, qargtypes),
				 values, NULL, false);
	}
	SPI_finish();
	return true;
}

/* The holds expire_isolated() expires in one subtransaction. */
typedef struct ExpireGroup
{
	int64	   *ids;
	char	  **skus;
	uint64		from;
	uint64		to;
	int64		done;			/* how many of them it expired */
} ExpireGroup;

static void
expire_group(void *arg)
{
	ExpireGroup *g = (ExpireGroup *) arg;
	uint64		i;

	for (i = g->from; i < g->to; i++)
	{
		CHECK_FOR_INTERRUPTS();
		if (expire_one(g->ids[i], g->skus[i]))
			g->done++;
	}
}

/*
 * Expires the holds ids[from .. to-1] in one subtransaction; false if one
 * of them failed, which rolls the group back (with a WARNING naming the
 * hold when the group is a single hold).  Cancellation is not swallowed.
 */
static bool
expire_isolated(int64 *ids, char **skus, uint64 from, uint64 to, int64 *n)
{
	ExpireGroup g = {ids, skus, from, to, 0};
	ErrorData  *edata = pacelc_run_in_subxact(expire_group, &g);

	if (edata == NULL)
	{
		*n += g.done;
		return true;
	}
	if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
		edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
		ReThrowError(edata);
	if (to - from == 1)
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("could not expire reservation %lld of sku \"%s\": %s",
						(long long) ids[from], skus[from], edata->message),
				 edata->detail ? errdetail("%s", edata->detail) : 0,
				 errhint("It stays held and is retried in the next round.")));
	FreeErrorData(edata);
	return false;
}

/*
 * Holds are expired in groups, each in a subtransaction (few enough that
 * the subtransaction ids of a batch stay in PostgreSQL's per-backend cache);
 * a group that fails is redone one hold per subtransaction, so one hold that
 * cannot be expired now (its SKU gets no shared-memory entry, say) never
 * stops the others.
 */
#define EXPIRE_GROUP	32

static Datum
expire_holds_body(PG_FUNCTION_ARGS)
{
	Oid			argtypes[2] = {INT4OID, TIMESTAMPTZOID};
	Datum		values[2];
	int32		batch;
	int64		n = 0;
	uint64		ndue,
				i;
	int64	   *ids;
	char	  **skus;

	check_writable("expire_holds()");
	/* the worker's rounds also settle prepared transactions that ended */
	pacelc_escrow_settle_finished();
	pacelc_require_arg(fcinfo, 0, "batch");
	batch = PG_GETARG_INT32(0);
	if (batch < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch must be positive")));

	SPI_connect();
	values[0] = Int32GetDatum(batch);
	/* below it no hold can be (the workers' expiry floor) */
	values[1] = TimestampTzGetDatum(pacelc_worker_expiry_floor(MyDatabaseId));
	run_plan(get_plan(PLAN_DUE_HOLDS,
					  "SELECT id, sku FROM pacelc.reservation_data r"
					  " WHERE state = 'held' AND expires_at <= statement_timestamp()"
					  "   AND expires_at >= $2"
					  /* not while a restore has loaded the hold but not its SKU */
					  "   AND EXISTS (SELECT FROM pacelc.skus k WHERE k.sku = r.sku)"
					  " ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED",
					  2, argtypes),
			 values, NULL, false);
	ndue = SPI_processed;
	ids = SPI_palloc(Max(ndue, 1) * sizeof(int64));
	skus = SPI_palloc(Max(ndue, 1) * sizeof(char *));
	for (i = 0; i < ndue; i++)
	{
		ids[i] = spi_int64(i, 1, NULL);
		skus[i] = SPI_palloc(SKU_MAXLEN + 1);
		strlcpy(skus[i], SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2),
				SKU_MAXLEN + 1);
	}
	SPI_finish();

	for (i = 0; i < ndue; i += EXPIRE_GROUP)
	{
		uint64		to = Min(i + EXPIRE_GROUP, ndue);
		uint64		j;

		if (expire_isolated(ids, skus, i, to, &n) || to - i == 1)
			continue;
		for (j = i; j < to; j++)
			(void) expire_isolated(ids, skus, j, j + 1, &n);
	}
	PG_RETURN_INT64(n);
}

/*
 * The SQL-callable entry points: each runs as the extension's owner and
 * knows its caller (privilege.c).
 */
PACELC_OWNER_ENTRY(pacelc_set_stock, set_stock_body)
PACELC_OWNER_ENTRY(pacelc_add_stock, add_stock_body)
PACELC_OWNER_ENTRY(pacelc_reserve, reserve_body)
PACELC_OWNER_ENTRY(pacelc_try_reserve, try_reserve_body)
PACELC_OWNER_ENTRY(pacelc_reserve_all, reserve_all_body)
PACELC_OWNER_ENTRY(pacelc_confirm, confirm_body)
PACELC_OWNER_ENTRY(pacelc_release, release_body)
PACELC_OWNER_ENTRY(pacelc_available, available_body)
PACELC_OWNER_ENTRY(pacelc_expire_holds, expire_holds_body)
