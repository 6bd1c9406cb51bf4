/*-------------------------------------------------------------------------
 *
 * reservation_rows.c
 *		The reserve path's table work without SPI (issue 15).
 *
 * A hot-SKU reserve is bound by what its transaction writes: one row in
 * pacelc.reservation_data (and, with an idempotency key, one in
 * pacelc.idempotency_keys).  Through SPI, every reserve paid for plan
 * revalidation, executor start-up, the parse of the table's CHECK
 * constraints from their stored text and a RETURNING projection, on top of
 * the insert itself.  Here:
 *
 *	- pacelc_reservation_insert() forms the row itself and inserts it with
 *	  table_tuple_insert() and ExecInsertIndexTuples() (every index of the
 *	  table, partial ones by their predicates, the primary key's uniqueness
 *	  checked), as the executor's INSERT does;
 *	- pacelc_key_visible() answers "is there any row with this idempotency
 *	  key?" with one index probe, so that the usual first use of a key
 *	  skips the lookup query (which still answers whenever a row exists).
 *
 * The fast path is taken only for the table it was written for: the
 * columns of 0.3 and later (matched by name and type) and no deferred
 * unique check (both checked once per relcache build, here), a plain table
 * with no trigger, rule or generated column (pacelc_fastpath_insert_ok(),
 * also once per relcache build), no row security that applies and the
 * INSERT right (asked at each insert).  Anything else (a database
 * still at 0.2, a column added by a later version) makes the functions
 * return false, and the caller takes its SPI path, which handles any
 * layout.  The row is checked against the table's NOT NULL and CHECK
 * constraints as they are now (pacelc_fastpath_check_row()), as the
 * INSERT would.
 *
 * Both run as the extension's owner (pacelc_run_as_owner), as the SPI
 * statements did.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/sysattr.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "fastpath.h"
#include "privilege.h"
#include "reservation_rows.h"

typedef struct ColumnSpec
{
	const char *name;
	Oid			type;
} ColumnSpec;

/* The columns of pacelc.reservation_data that the fast path fills. */
enum
{
	COL_ID,
	COL_SKU,
	COL_QTY,
	COL_STATE,
	COL_FOLDED,
	COL_CREATED_AT,
	COL_EXPIRES_AT,
	COL_ENDED_AT,
	COL_IDEMPOTENCY_KEY,
	COL_ON_EXPIRE,
	COL_OWNER,
	NUM_COLS
};

static const ColumnSpec columns[NUM_COLS] = {
	{"id", INT8OID},
	{"sku", TEXTOID},
	{"qty", INT8OID},
	{"state", TEXTOID},
	{"folded", BOOLOID},
	{"created_at", TIMESTAMPTZOID},
	{"expires_at", TIMESTAMPTZOID},
	{"ended_at", TIMESTAMPTZOID},
	{"idempotency_key", TEXTOID},
	{"on_expire", JSONBOID},
	{"owner", REGROLEOID},
};

/* The same for pacelc.idempotency_keys. */
enum
{
	KCOL_KEY,
	KCOL_SKUS,
	KCOL_QTYS,
	KCOL_IDS,
	KCOL_CREATED_AT,
	KCOL_OWNER,
	NUM_KCOLS
};

static const ColumnSpec key_columns[NUM_KCOLS] = {
	{"key", TEXTOID},
	{"skus", TEXTARRAYOID},
	{"qtys", INT8ARRAYOID},
	{"ids", INT8ARRAYOID},
	{"created_at", TIMESTAMPTZOID},
	{"owner", REGROLEOID},
};

/*
 * What this backend knows about the tables; forgotten whenever the
 * relcache entry of one of them (or all of them) is invalidated, so DDL,
 * DROP/CREATE EXTENSION and an update are seen at the next call.
 */
typedef struct RowsCache
{
	bool		valid;
	bool		fast;			/* reservation_data has the known layout */
	bool		keys_fast;		/* idempotency_keys has it, with its index */
	Oid			reservations;	/* pacelc.reservation_data */
	Oid			sequence;		/* pacelc.reservation_id_seq */
	Oid			keys;			/* pacelc.idempotency_keys */
	Oid			keys_index;		/* idempotency_keys_key_owner */
	int			attno[NUM_COLS];	/* 0-based position of each column */
	int			key_attno[NUM_KCOLS];
} RowsCache;

static RowsCache cache;
static PacelcRowChecks reservation_checks;
static PacelcRowChecks key_checks;
static uint64 cache_invals = 0;
static bool callback_registered = false;

/*
 * Any relcache invalidation of a pacelc table (or of all relations)
 * forgets the cache; the counter tells a load that one arrived meanwhile.
 */
static void
rows_relcache_callback(Datum arg, Oid relid)
{
	cache_invals++;
	if (!OidIsValid(relid) || relid == cache.reservations ||
		relid == cache.sequence || relid == cache.keys ||
		relid == cache.keys_index)
		cache.valid = false;
}

/*
 * Are all of the table's unique and exclusion checks immediate?  A
 * deferred one would need the executor's after-trigger queue.
 */
static bool
indexes_immediate(Relation rel)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	bool		ok = true;

	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), AccessShareLock);

		if (!index->rd_index->indimmediate)
			ok = false;
		index_close(index, AccessShareLock);
	}
	list_free(indexes);
	return ok;
}

/*
 * Are the table's columns the ones the fast path fills, and its unique
 * checks immediate?  (What else would make an INSERT do more is for
 * pacelc_fastpath_insert_ok() and pacelc_fastpath_shape_ok() to say.)
 */
static bool
layout_known(Relation rel, const ColumnSpec *cols, int ncols, int *attno)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			i,
				j;

	if (!indexes_immediate(rel))
		return false;
	for (j = 0; j < ncols; j++)
		attno[j] = -1;
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		for (j = 0; j < ncols; j++)
			if (strcmp(NameStr(att->attname), cols[j].name) == 0)
				break;
		if (j == ncols || att->atttypid != cols[j].type)
			return false;		/* a column it does not know how to fill */
		attno[j] = i;
	}
	for (j = 0; j < ncols; j++)
		if (attno[j] < 0)
			return false;
	return true;
}

/*
 * Is the key index the unique btree on (key, owner) NULLS NOT DISTINCT
 * that the probe and ON CONFLICT (key, owner) rely on, and the table's
 * only index?
 */
static bool
key_index_known(Relation rel, Oid indexoid, const int *attno)
{
	List	   *indexes = RelationGetIndexList(rel);
	Relation	index;
	bool		ok;

	ok = list_length(indexes) == 1 && linitial_oid(indexes) == indexoid;
	list_free(indexes);
	if (!ok)
		return false;
	index = index_open(indexoid, AccessShareLock);
	ok = index->rd_rel->relam == BTREE_AM_OID &&
		index->rd_index->indisunique &&
		index->rd_index->indimmediate &&
		index->rd_index->indisvalid &&
#if PG_VERSION_NUM >= 150000
		index->rd_index->indnullsnotdistinct &&
#endif
		index->rd_index->indnatts == 2 &&
		index->rd_index->indkey.values[0] == attno[KCOL_KEY] + 1 &&
		index->rd_index->indkey.values[1] == attno[KCOL_OWNER] + 1 &&
		RelationGetIndexExpressions(index) == NIL &&
		RelationGetIndexPredicate(index) == NIL;
	index_close(index, AccessShareLock);
	return ok;
}

/* Fills the cache if needed; false if pacelc's tables are not there. */
static bool
rows_cache_load(void)
{
	RowsCache	c;
	Oid			nsp;
	Relation	rel;
	uint64		invals;

	if (cache.valid)
		return OidIsValid(cache.reservations);
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(rows_relcache_callback, (Datum) 0);
		callback_registered = true;
	}
	invals = cache_invals;
	memset(&c, 0, sizeof(c));
	nsp = get_namespace_oid("pacelc", true);
	if (OidIsValid(nsp))
	{
		c.reservations = get_relname_relid("reservation_data", nsp);
		c.sequence = get_relname_relid("reservation_id_seq", nsp);
		c.keys = get_relname_relid("idempotency_keys", nsp);
		c.keys_index = get_relname_relid("idempotency_keys_key_owner", nsp);
	}
	if (!OidIsValid(c.reservations) || !OidIsValid(c.sequence))
		return false;
	rel = table_open(c.reservations, AccessShareLock);
	c.fast = pacelc_schema_03() &&
		layout_known(rel, columns, NUM_COLS, c.attno);
	table_close(rel, AccessShareLock);
	if (c.fast && OidIsValid(c.keys) && OidIsValid(c.keys_index))
	{
		rel = table_open(c.keys, AccessShareLock);
		c.keys_fast = layout_known(rel, key_columns, NUM_KCOLS, c.key_attno) &&
			key_index_known(rel, c.keys_index, c.key_attno);
		table_close(rel, AccessShareLock);
	}

	/*
	 * Kept only if no invalidation arrived while looking (opening the
	 * tables processes them); else the next call looks again.
	 */
	c.valid = (cache_invals == invals);
	cache = c;
	return true;
}

/*
 * Opens pacelc.idempotency_keys (keys) or pacelc.reservation_data for a
 * direct insert, with RowExclusiveLock; NULL, holding nothing, when the
 * fast path does not apply.
 */
static Relation
open_for_insert(bool keys)
{
	Relation	rel;

	if (!rows_cache_load() || !(keys ? cache.keys_fast : cache.fast))
		return NULL;
	rel = table_open(keys ? cache.keys : cache.reservations, RowExclusiveLock);

	/*
	 * An invalidation processed by the lock may have changed the layout;
	 * rules, triggers, row security that applies and a missing INSERT right
	 * are left to the SQL statement too (fastpath.c).
	 */
	if (!cache.valid || !(keys ? cache.keys_fast : cache.fast) ||
		RelationGetRelid(rel) != (keys ? cache.keys : cache.reservations) ||
		!pacelc_fastpath_insert_ok(keys ? &key_checks : &reservation_checks, rel))
	{
		table_close(rel, RowExclusiveLock);
		return NULL;
	}
	return rel;
}

/* A row for rel with every column null, to be filled with set_col(). */
static TupleTableSlot *
empty_row(Relation rel)
{
	TupleTableSlot *slot = table_slot_create(rel, NULL);

	ExecClearTuple(slot);
	memset(slot->tts_isnull, true, RelationGetDescr(rel)->natts * sizeof(bool));
	return slot;
}

static inline void
set_col(TupleTableSlot *slot, int attno, Datum value)
{
	slot->tts_values[attno] = value;
	slot->tts_isnull[attno] = false;
}

/*
 * Inserts a held reservation as the INSERT of the SPI path would:
 * id from pacelc.reservation_id_seq, created_at now(), expires_at
 * clock_timestamp() + ttl.  Returns false (having done nothing) when the
 * fast path does not apply; otherwise the new id and, with a ttl, the
 * expiry time.
 */
bool
pacelc_reservation_insert(const char *sku, int64 qty, Interval *ttl,
						  text *key, struct varlena *on_expire, Oid owner,
						  int64 *id, TimestampTz *expires_at)
{
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
	MemoryContext oldcxt;
	List	   *recheck;
	int		   *attno;

	if ((rel = open_for_insert(false)) == NULL)
		return false;
	attno = cache.attno;

	estate = CreateExecutorState();
	oldcxt = MemoryContextSwitchTo(estate->es_query_cxt);

	slot = empty_row(rel);
	*id = nextval_internal(cache.sequence, true);
	set_col(slot, attno[COL_ID], Int64GetDatum(*id));
	set_col(slot, attno[COL_SKU], CStringGetTextDatum(sku));
	set_col(slot, attno[COL_QTY], Int64GetDatum(qty));
	set_col(slot, attno[COL_STATE], CStringGetTextDatum("held"));
	set_col(slot, attno[COL_FOLDED], BoolGetDatum(false));
	set_col(slot, attno[COL_CREATED_AT],
			TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()));
	set_col(slot, attno[COL_OWNER], ObjectIdGetDatum(owner));
	if (ttl != NULL)
	{
		*expires_at = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
															  TimestampTzGetDatum(GetCurrentTimestamp()),
															  IntervalPGetDatum(ttl)));
		set_col(slot, attno[COL_EXPIRES_AT], TimestampTzGetDatum(*expires_at));
	}
	if (key != NULL)
		set_col(slot, attno[COL_IDEMPOTENCY_KEY], PointerGetDatum(key));
	if (on_expire != NULL)
		set_col(slot, attno[COL_ON_EXPIRE], PointerGetDatum(on_expire));
	ExecStoreVirtualTuple(slot);
	/* the table's NOT NULL and CHECK constraints, as they are now */
	pacelc_fastpath_check_row(&reservation_checks, rel, slot);

	table_tuple_insert(rel, slot, GetCurrentCommandId(true), 0, NULL);

	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	pacelc_fastpath_open_indices(&reservation_checks, rri, false);
	recheck = ExecInsertIndexTuples(rri, slot, estate, false, false, NULL, NIL
#if PG_VERSION_NUM >= 160000
									,false
#endif
		);
	Assert(recheck == NIL);		/* no deferrable unique or exclusion index */
	list_free(recheck);
	ExecCloseIndices(rri);
	ExecDropSingleTupleTableSlot(slot);

	MemoryContextSwitchTo(oldcxt);
	FreeExecutorState(estate);
	/* the lock stays to the end of the transaction, as an INSERT's does */
	table_close(rel, NoLock);
	return true;
}

/*
 * Could a row with this idempotency key be visible to the lookup that the
 * caller would run now?  One probe of the (key, owner) index, with the
 * snapshot that lookup would take (a new one per statement in READ
 * COMMITTED, after a command counter increment, as SPI does).  true also
 * when the fast path does not apply: the caller then runs its lookup.
 */
bool
pacelc_key_visible(text *key)
{
	Relation	heap;
	Relation	index;
	TupleTableSlot *slot;
	bool		found;

	if (!rows_cache_load() || !cache.keys_fast)
		return true;

	heap = table_open(cache.keys, AccessShareLock);
	index = index_open(cache.keys_index, AccessShareLock);
	/* a plain table: the probe reads its heap and btree directly */
	if (!cache.valid || !cache.keys_fast ||
		RelationGetRelid(heap) != cache.keys ||
		!pacelc_fastpath_shape_ok(&key_checks, heap))
	{
		index_close(index, AccessShareLock);
		table_close(heap, AccessShareLock);
		return true;
	}

	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();

	slot = table_slot_create(heap, NULL);
	found = pacelc_fastpath_lookup(heap, index, key, GetActiveSnapshot(), slot);
	ExecDropSingleTupleTableSlot(slot);

	PopActiveSnapshot();
	index_close(index, AccessShareLock);
	table_close(heap, AccessShareLock);
	return found;
}

/*
 * INSERT INTO pacelc.idempotency_keys ... ON CONFLICT (key, owner) DO
 * NOTHING, done as the executor does it (a speculative insertion: check
 * the unique index, waiting for an in-flight inserter of the same key;
 * insert with a speculative token; on a conflict found while inserting the
 * index entry, kill the tuple and start over).  Returns false when the
 * fast path does not apply; otherwise *inserted tells whether the row went
 * in (false: the key was there, committed by another transaction or ours).
 */
bool
pacelc_key_insert(text *key, ArrayType *skus, ArrayType *qtys,
				  ArrayType *ids, Oid owner, bool *inserted)
{
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
	MemoryContext oldcxt;
	int		   *attno;
	ItemPointerData conflict_tid;
	TransactionId xid;

	if ((rel = open_for_insert(true)) == NULL)
		return false;
	attno = cache.key_attno;

	/* the snapshot the INSERT would run with (RR: the transaction's) */
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();

	estate = CreateExecutorState();
	estate->es_snapshot = GetActiveSnapshot();
	estate->es_output_cid = GetCurrentCommandId(true);
	oldcxt = MemoryContextSwitchTo(estate->es_query_cxt);

	slot = empty_row(rel);
	set_col(slot, attno[KCOL_KEY], PointerGetDatum(key));
	set_col(slot, attno[KCOL_SKUS], PointerGetDatum(skus));
	set_col(slot, attno[KCOL_QTYS], PointerGetDatum(qtys));
	set_col(slot, attno[KCOL_IDS], PointerGetDatum(ids));
	set_col(slot, attno[KCOL_CREATED_AT],
			TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()));
	set_col(slot, attno[KCOL_OWNER], ObjectIdGetDatum(owner));
	ExecStoreVirtualTuple(slot);
	pacelc_fastpath_check_row(&key_checks, rel, slot);

	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	pacelc_fastpath_open_indices(&key_checks, rri, true);
	xid = GetCurrentTransactionId();

	for (;;)
	{
		uint32		token;
		bool		conflict = false;
		List	   *recheck;

		CHECK_FOR_INTERRUPTS();
#if PG_VERSION_NUM >= 180000
		if (!ExecCheckIndexConstraints(rri, slot, estate, &conflict_tid, NULL, NIL))
#else
		if (!ExecCheckIndexConstraints(rri, slot, estate, &conflict_tid, NIL))
#endif
		{
			/*
			 * The key is there, committed.  As ON CONFLICT DO NOTHING does,
			 * a transaction whose snapshot cannot see that row (REPEATABLE
			 * READ or SERIALIZABLE) fails rather than act on a row it
			 * cannot read.
			 */
			if (IsolationUsesXactSnapshot())
			{
				TupleTableSlot *found = table_slot_create(rel, NULL);
				bool		xmin_isnull;

				if (!table_tuple_fetch_row_version(rel, &conflict_tid, SnapshotAny, found))
					elog(ERROR, "failed to fetch conflicting tuple for ON CONFLICT");
				if (!table_tuple_satisfies_snapshot(rel, found, estate->es_snapshot) &&
					!TransactionIdIsCurrentTransactionId(
														 DatumGetTransactionId(slot_getsysattr(found,
																							   MinTransactionIdAttributeNumber,
																							   &xmin_isnull))))
					ereport(ERROR,
							(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
							 errmsg("could not serialize access due to concurrent update")));
				ExecDropSingleTupleTableSlot(found);
			}
			*inserted = false;
			break;
		}

		token = SpeculativeInsertionLockAcquire(xid);
		table_tuple_insert_speculative(rel, slot, estate->es_output_cid, 0, NULL, token);
		recheck = ExecInsertIndexTuples(rri, slot, estate, false, true, &conflict, NIL
#if PG_VERSION_NUM >= 160000
										,false
#endif
			);
		table_tuple_complete_speculative(rel, slot, token, !conflict);
		SpeculativeInsertionLockRelease(xid);
		list_free(recheck);
		if (!conflict)
		{
			*inserted = true;
			break;
		}
		/* someone inserted the key meanwhile: look again (and wait) */
	}

	ExecCloseIndices(rri);
	ExecDropSingleTupleTableSlot(slot);
	MemoryContextSwitchTo(oldcxt);
	FreeExecutorState(estate);
	PopActiveSnapshot();

	/*
	 * The lock stays to the end of the transaction, as an INSERT's does: a
	 * CREATE or REINDEX INDEX CONCURRENTLY must wait for this transaction,
	 * whose row the index it builds cannot see yet.
	 */
	table_close(rel, NoLock);
	return true;
}
