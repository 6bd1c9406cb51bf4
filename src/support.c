/*-------------------------------------------------------------------------
 *
 * support.c
 *		Leaf helpers: the preload guard, argument checks and kept plans.
 *
 * pacelc keeps escrow counters and waiter state in shared memory and runs
 * background workers, so it only works when loaded through
 * shared_preload_libraries.  Loaded any other way (LOAD, or the first call
 * of a function in a session) _PG_init does nothing at all, and every entry
 * point refuses with SQLSTATE 55000 instead of working half-way.
 *
 * This file calls no other pacelc file, so every module may call it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/stratnum.h"
#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"

#include "support.h"

bool		pacelc_preloaded = false;

/*
 * Every SQL-callable function calls this first: without the preloaded
 * library there is no shared memory to work with.
 */
void
pacelc_check_loaded(void)
{
	if (!pacelc_preloaded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pacelc must be loaded via \"shared_preload_libraries\""),
				 errhint("Add pacelc to \"shared_preload_libraries\" in postgresql.conf and restart the server.")));
}

/*
 * An idempotency key (reservations and messages alike) is 1 to
 * PACELC_KEY_MAXLEN bytes; NULL means "no key".
 */
void
pacelc_check_key(text *key)
{
	Size		len;

	if (key == NULL)
		return;
	len = VARSIZE_ANY_EXHDR(key);
	if (len == 0 || len > PACELC_KEY_MAXLEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("idempotency_key must have between 1 and %d bytes",
						PACELC_KEY_MAXLEN)));
}

/*
 * A queue name starts with a letter or underscore and has at most
 * PACELC_QUEUE_NAME_MAXLEN letters, digits, underscores, dots or dashes
 * (ASCII only: it becomes part of a NOTIFY channel name).
 */
#define QUEUE_NAME_START(c) \
	(((c) >= 'A' && (c) <= 'Z') || ((c) >= 'a' && (c) <= 'z') || (c) == '_')

bool
pacelc_queue_name_valid(text *name)
{
	const char *s = VARDATA_ANY(name);
	int			len = VARSIZE_ANY_EXHDR(name);
	int			i;

	if (len < 1 || len > PACELC_QUEUE_NAME_MAXLEN)
		return false;
	if (!QUEUE_NAME_START(s[0]))
		return false;
	for (i = 1; i < len; i++)
		if (!QUEUE_NAME_START(s[i]) && !(s[i] >= '0' && s[i] <= '9') &&
			s[i] != '.' && s[i] != '-')
			return false;
	return true;
}

void
pacelc_check_queue_name(text *name)
{
	if (!pacelc_queue_name_valid(name))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid queue name \"%s\"", text_to_cstring(name)),
				 errdetail("A queue name starts with a letter or underscore and has at most %d letters, digits, underscores, dots or dashes.",
						   PACELC_QUEUE_NAME_MAXLEN)));
}

/* NULL is never a valid value for the arguments that name what to change. */
void
pacelc_require_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
}

/*
 * Prepares a statement the first time it is needed and keeps it for the
 * life of the backend (the plan cache replans it after DDL): the hot paths
 * run the same few statements thousands of times a second.
 */
SPIPlanPtr
pacelc_keep_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, argtypes);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "SPI_prepare failed for \"%s\": %s",
				 sql, SPI_result_code_string(SPI_result));
		*plan = p;
	}
	return *plan;
}

/*
 * Runs fn(arg) in an internal subtransaction (as PL/pgSQL runs a block with
 * an EXCEPTION clause).  Returns NULL when fn returned and the
 * subtransaction was released; when fn raised an error, the subtransaction
 * is rolled back, the error state flushed, and a copy of the error is
 * returned (palloc'd in the caller's memory context: FreeErrorData it, or
 * ReThrowError it).  Either way the caller's memory context and resource
 * owner are current again.  The caller decides what an error means (and
 * rethrows a cancel or a shutdown it must not swallow).
 *
 * SPI: a caller connected to SPI may use that connection inside fn (its
 * subtransaction's work is rolled back with it); a connection fn opens
 * itself is closed on error by the rollback (AtEOSubXact_SPI), so fn needs
 * no PG_TRY of its own.
 */
ErrorData *
pacelc_run_in_subxact(void (*fn) (void *arg), void *arg)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_END_TRY();
	return edata;
}

/*
 * Makes room for need elements of elemsize bytes in an array kept for the
 * life of the backend (in TopMemoryContext; NULL until the first call),
 * at least doubling it.  Returns the array and sets *max to its capacity;
 * if it cannot grow, it raises an error and the array is as it was.
 */
void *
pacelc_grow_array(void *array, int *max, int need, Size elemsize)
{
	int			newmax;

	if (need <= *max)
		return array;
	newmax = Max(*max * 2, need + 16);
	if (array == NULL)
		array = MemoryContextAlloc(TopMemoryContext, (Size) newmax * elemsize);
	else
		array = repalloc(array, (Size) newmax * elemsize);
	*max = newmax;
	return array;
}

/*
 * Begins a scan of index, a btree whose first column is text, for the
 * rows of heap whose key equals key (a text Datum), in the index's
 * collation; the caller fetches with index_getnext_slot() and ends it with
 * index_endscan().
 */
IndexScanDesc
pacelc_text_index_scan(Relation heap, Relation index, Datum key,
					   Snapshot snapshot)
{
	ScanKeyData skey;
	IndexScanDesc scan;

	ScanKeyEntryInitialize(&skey, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[0], F_TEXTEQ, key);
#if PG_VERSION_NUM >= 180000
	scan = index_beginscan(heap, index, snapshot, NULL, 1, 0);
#else
	scan = index_beginscan(heap, index, snapshot, 1, 0);
#endif
	index_rescan(scan, &skey, 1, NULL, 0);
	return scan;
}

/*
 * The end of each module's ProcessUtility hook: the hook installed before
 * it, or PostgreSQL's own processing.
 */
void
pacelc_next_utility(ProcessUtility_hook_type prev, PlannedStmt *pstmt,
					const char *queryString, bool readOnlyTree,
					ProcessUtilityContext context, ParamListInfo params,
					QueryEnvironment *queryEnv, DestReceiver *dest,
					QueryCompletion *qc)
{
	if (prev)
		prev(pstmt, queryString, readOnlyTree, context, params, queryEnv,
			 dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

/* ---------------------------------------------------------------------
 * The limits for SQL: table constraints and PL/pgSQL call these
 * --------------------------------------------------------------------- */

/*
 * The search path of the owner's code: pg_catalog, pacelc, pg_temp, set as
 * a SET clause on the function would set it (a GUC nest level of its own:
 * a SET LOCAL made inside ends with the call, a function with a SET clause
 * of its own still gets its path).  The C entry points that act as the
 * owner pin it themselves (privilege.c), most at their start; enqueue()
 * only before it runs anything that resolves a name or may run code
 * other than pacelc's (SQL, a DBA's CHECK or index function: see
 * fastpath.c), since on PostgreSQL 15 the save and restore, and the
 * caller's search path recomputed at its next statement, cost a twentieth
 * of a message.  owner_path_level: the GUC nest level of the pin of the
 * innermost entry point running, 0 while it has none, -1 while none runs
 * (pacelc's other code then runs in a function with a SET clause, or in
 * the worker with its own settings: nothing to pin).
 */
static int	owner_path_level = -1;

void
pacelc_pin_owner_path(void)
{
	if (owner_path_level != 0)
		return;					/* pinned already, or not in an entry point */
	owner_path_level = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pacelc, pg_temp",
							 superuser() ? PGC_SUSET : PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
}

/* At an entry point's start: returns the caller's state for _leave(). */
int
pacelc_owner_path_enter(bool pin)
{
	int			saved = owner_path_level;

	owner_path_level = 0;
	if (pin)
		pacelc_pin_owner_path();
	return saved;
}

/*
 * At its end: ends its pin, if it pinned.  After an error the
 * (sub)transaction abort that catches it restores the setting: only the
 * state is set back then.
 */
void
pacelc_owner_path_leave(int saved, bool failed)
{
	if (owner_path_level > 0 && !failed)
		AtEOXact_GUC(true, owner_path_level);
	owner_path_level = saved;
}

PG_FUNCTION_INFO_V1(pacelc_private_valid_sku);

/* pacelc_private.valid_sku(text): 1 to PACELC_SKU_MAXLEN bytes. */
Datum
pacelc_private_valid_sku(PG_FUNCTION_ARGS)
{
	Size		len = VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(0));

	PG_RETURN_BOOL(len >= 1 && len <= PACELC_SKU_MAXLEN);
}

PG_FUNCTION_INFO_V1(pacelc_private_valid_key);

/* pacelc_private.valid_key(text): 1 to PACELC_KEY_MAXLEN bytes. */
Datum
pacelc_private_valid_key(PG_FUNCTION_ARGS)
{
	Size		len = VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(0));

	PG_RETURN_BOOL(len >= 1 && len <= PACELC_KEY_MAXLEN);
}

PG_FUNCTION_INFO_V1(pacelc_private_valid_queue_name);

/* pacelc_private.valid_queue_name(text): see pacelc_queue_name_valid. */
Datum
pacelc_private_valid_queue_name(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(pacelc_queue_name_valid(PG_GETARG_TEXT_PP(0)));
}

PG_FUNCTION_INFO_V1(pacelc_private_check_queue_name);

/*
 * pacelc_private.check_queue_name(text): the error create_queue() gives
 * for an invalid name (22023), for the PL/pgSQL implementations.
 */
Datum
pacelc_private_check_queue_name(PG_FUNCTION_ARGS)
{
	pacelc_check_queue_name(PG_GETARG_TEXT_PP(0));
	PG_RETURN_VOID();
}
