/*-------------------------------------------------------------------------
 *
 * queue.c
 *		The compensation queue's SQL-callable C: enqueue(), the rights on a
 *		queue, the per-queue lock, and the wake-ups at commit.
 *
 * The queue itself lives in tables (install script, section 3); the
 * background workers (worker.c, which also keeps their shared registry)
 * consume it.  A committing enqueue wakes its database's workers through
 * pacelc_worker_wake(); CREATE EXTENSION asks the launcher for a worker.
 *
 * enqueue() lives here: it is the queue's hot path (producers call it
 * thousands of times a second in their own transactions), so it is written
 * in C with one saved plan instead of PL/pgSQL.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "commands/async.h"
#include "commands/sequence.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "utils/wait_event.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "fastpath.h"
#include "privilege.h"
#include "queue.h"
#include "support.h"
#include "worker.h"


PG_FUNCTION_INFO_V1(pacelc_wake_worker_at_commit);

/*
 * nack(), retry(), create_queue() and alter_queue(): the workers should
 * look at the queue after commit, from its start (the messages these make
 * due may lie before where a worker's scan begins).
 */
Datum
pacelc_wake_worker_at_commit(PG_FUNCTION_ARGS)
{
	pacelc_check_loaded();
	pacelc_require_internal(fcinfo);
	pacelc_worker_rescan(MyDatabaseId);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(pacelc_wake_launcher);

/*
 * CREATE EXTENSION calls this so a new database is served at once: the
 * launcher is woken when the transaction commits (before, the new worker
 * would find no extension and leave).  It is a no-op without the preloaded
 * library, so that the extension can still be created (and then explain
 * itself with 55000 on use).
 */
Datum
pacelc_wake_launcher(PG_FUNCTION_ARGS)
{
	pacelc_require_internal(fcinfo);
	if (pacelc_preloaded)
		pacelc_worker_request();
	PG_RETURN_VOID();
}

/* ---------------------------------------------------------------------
 * Queue rights and the queue lock
 * --------------------------------------------------------------------- */

/*
 * A heavyweight lock per queue name: enqueue holds it in share mode until
 * its transaction ends, drop_queue() in exclusive mode.  So a drop waits
 * for the enqueues in flight into that queue, and blocks only that queue,
 * never the others or the worker.  (A user lock tag that no SQL-level
 * advisory lock function can produce.)
 */
static bool
queue_lock(text *queue, LOCKMODE mode, bool dont_wait)
{
	LOCKTAG		tag;
	unsigned char *name = (unsigned char *) VARDATA_ANY(queue);
	int			len = VARSIZE_ANY_EXHDR(queue);

	/*
	 * 64 bits of two independent hashes of the name: an application must not
	 * be able to find a name of its own whose lock is another application's
	 * queue's lock.
	 */
	tag.locktag_field1 = MyDatabaseId;
	tag.locktag_field2 = DatumGetUInt32(hash_any(name, len));
	tag.locktag_field3 = (uint32) DatumGetUInt64(hash_any_extended(name, len, 0x7061636c));
	tag.locktag_field4 = 0x7051;	/* "pQ" */
	tag.locktag_type = LOCKTAG_USERLOCK;
	tag.locktag_lockmethodid = USER_LOCKMETHOD;
	return LockAcquire(&tag, mode, false, dont_wait) != LOCKACQUIRE_NOT_AVAIL;
}

PG_FUNCTION_INFO_V1(pacelc_private_lock_queue);

/*
 * pacelc_private.lock_queue(name): drop_queue()'s exclusive queue lock.
 * Asked for without queueing, again and again, so that enqueues into the
 * queue never line up behind a drop that waits; 55P03 after lock_timeout
 * (or 10 s when it is off).
 */
Datum
pacelc_private_lock_queue(PG_FUNCTION_ARGS)
{
	text	   *queue = PG_GETARG_TEXT_PP(0);
	TimestampTz deadline;

	pacelc_require_internal(fcinfo);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										   LockTimeout > 0 ? LockTimeout : 10000);
	while (!queue_lock(queue, AccessExclusiveLock, true))
	{
		if (GetCurrentTimestamp() > deadline)
			ereport(ERROR,
					(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
					 errmsg("could not drop queue \"%s\": messages are being written into it",
							text_to_cstring(queue)),
					 errhint("Retry when the queue is quieter, or raise \"lock_timeout\".")));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10, PG_WAIT_LOCK);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	PG_RETURN_VOID();
}

/*
 * May caller produce into (or consume from) the queue owned by owner?  Its
 * owner's members and pacelc_admin may; others need a grant (grant_queue)
 * to a role whose rights they have.
 */
bool
pacelc_queue_allowed(Oid caller, Oid owner, text *queue, bool consume)
{
	static SPIPlanPtr grant_plan = NULL;
	Oid			argtypes[3] = {TEXTOID, OIDOID, BOOLOID};
	Datum		values[3];
	bool		allowed;

	if (pacelc_acts_for(caller, owner))
		return true;
	values[0] = PointerGetDatum(queue);
	values[1] = ObjectIdGetDatum(caller);
	values[2] = BoolGetDatum(consume);
	pacelc_pin_owner_path();	/* SQL follows (a no-op where pinned) */
	SPI_connect();
	if (SPI_execute_plan(pacelc_keep_plan(&grant_plan,
										  "SELECT 1 FROM pacelc.queue_grants g"
										  " WHERE g.queue = $1"
										  "   AND (CASE WHEN $3 THEN g.consume ELSE g.produce END)"
										  "   AND pg_catalog.pg_has_role($2, g.grantee::pg_catalog.oid, 'USAGE')"
										  " LIMIT 1",
										  3, argtypes),
						 values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look up the rights on a queue");
	allowed = SPI_processed > 0;
	SPI_finish();
	return allowed;
}

PG_FUNCTION_INFO_V1(pacelc_private_queue_allowed);

/*
 * pacelc_private.queue_allowed(caller, queue, owner, consume): the same
 * for the PL/pgSQL implementations.
 */
Datum
pacelc_private_queue_allowed(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(pacelc_queue_allowed(PG_GETARG_OID(0), PG_GETARG_OID(2),
										PG_GETARG_TEXT_PP(1), PG_GETARG_BOOL(3)));
}

void
pacelc_queue_denied(text *queue, bool consume)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 consume ?
			 errmsg("permission denied to consume from queue \"%s\"",
					text_to_cstring(queue)) :
			 errmsg("permission denied to produce into queue \"%s\"",
					text_to_cstring(queue)),
			 errhint("The queue's owner can grant it with pacelc.grant_queue().")));
}

/* ---------------------------------------------------------------------
 * enqueue()
 * --------------------------------------------------------------------- */

/*
 * One statement looks the queue up (no row: the queue does not exist) and
 * inserts the message unless its idempotency key is taken.  No foreign key
 * and no lock on the queue row: a busy queue's producers must not meet on
 * one row; they share the queue's lock instead (queue_lock), which only
 * drop_queue() takes exclusively.  The insert happens only for a caller
 * with the right to produce ($5: the caller has it, decided in C).
 */
static const char *const enqueue_sql =
"WITH q AS (SELECT q.handler IS NULL AS consumer, q.owner::pg_catalog.oid AS owner"
"             FROM pacelc.queues q WHERE q.name OPERATOR(pg_catalog.=) $1),"
"     ins AS (INSERT INTO pacelc.messages AS m (queue, payload, run_at, idempotency_key)"
"             SELECT $1, $2, $3, $4 FROM q"
"              WHERE $5 OR pg_catalog.pg_has_role($6, q.owner::pg_catalog.oid, 'USAGE')"
"             ON CONFLICT (queue, idempotency_key) WHERE idempotency_key IS NOT NULL"
"             DO NOTHING RETURNING m.id)"
"SELECT q.consumer, (SELECT ins.id FROM ins), q.owner FROM q";

/*
 * The same without a key ($4 is NULL): no ON CONFLICT clause.  An insert
 * with one always goes the speculative way (a speculative-insertion lock in
 * the shared lock table and a second WAL record per row), also when the
 * row has no key and so cannot conflict; most messages have none.
 */
static const char *const enqueue_nokey_sql =
"WITH q AS (SELECT q.handler IS NULL AS consumer, q.owner::pg_catalog.oid AS owner"
"             FROM pacelc.queues q WHERE q.name OPERATOR(pg_catalog.=) $1),"
"     ins AS (INSERT INTO pacelc.messages AS m (queue, payload, run_at)"
"             SELECT $1, $2, $3 FROM q"
"              WHERE $5 OR pg_catalog.pg_has_role($6, q.owner::pg_catalog.oid, 'USAGE')"
"             RETURNING m.id)"
"SELECT q.consumer, (SELECT ins.id FROM ins), q.owner FROM q";

/*
 * The key was taken: the first message's id.  A statement of its own, so
 * that in READ COMMITTED its snapshot sees a message whose transaction
 * committed while the insert waited for it.
 */
static const char *const enqueue_key_sql =
"SELECT m.id FROM pacelc.messages m"
" WHERE m.queue OPERATOR(pg_catalog.=) $1 AND m.idempotency_key OPERATOR(pg_catalog.=) $2";

static SPIPlanPtr enqueue_plan = NULL;
static SPIPlanPtr enqueue_nokey_plan = NULL;
static SPIPlanPtr enqueue_key_plan = NULL;

/* The id of the message that already holds this queue's idempotency key. */
static int64
enqueue_existing(text *queue, Datum key)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	bool		isnull = true;
	int64		id = 0;

	pacelc_pin_owner_path();
	values[0] = PointerGetDatum(queue);
	values[1] = key;
	if (SPI_execute_plan(pacelc_keep_plan(&enqueue_key_plan, enqueue_key_sql, 2, argtypes),
						 values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "enqueue could not look up its idempotency key");
	if (SPI_processed == 1)
		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 1, &isnull));
	if (isnull)
		elog(ERROR, "enqueue found no message for its idempotency key");
	return id;
}

/*
 * Runs the enqueue statement.  Under REPEATABLE READ it reads the queue
 * with the latest snapshot: the transaction's own snapshot may still show
 * a queue that a drop_queue() committed meanwhile (the queue lock only
 * orders the two, it cannot make the older snapshot see the drop).
 */
static bool
enqueue_execute(text *queue, Datum *values, const char *nulls,
				bool *consumer, Oid *owner, int64 *id)
{
	bool		isnull;
	Oid			argtypes[6] = {TEXTOID, JSONBOID, TIMESTAMPTZOID, TEXTOID, BOOLOID, OIDOID};
	SPIPlanPtr	plan;
	int			rc;

	pacelc_pin_owner_path();
	if (nulls[3] == 'n')
		plan = pacelc_keep_plan(&enqueue_nokey_plan, enqueue_nokey_sql, 6, argtypes);
	else
		plan = pacelc_keep_plan(&enqueue_plan, enqueue_sql, 6, argtypes);

	if (IsolationUsesXactSnapshot())
		rc = SPI_execute_snapshot(plan, values, nulls, GetLatestSnapshot(),
								  InvalidSnapshot, false, false, 0);
	else
		rc = SPI_execute_plan(plan, values, nulls, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "enqueue failed");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("queue \"%s\" does not exist", text_to_cstring(queue))));
	*consumer = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
	*owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
											SPI_tuptable->tupdesc, 3, &isnull));
	*id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, 2, &isnull));
	return !isnull;
}

/* enqueue_lookup() as a statement, for a table laid out otherwise. */
static bool
enqueue_lookup_sql(text *queue, bool *consumer, Oid *owner)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	bool		isnull;
	int			rc;

	pacelc_pin_owner_path();
	values[0] = PointerGetDatum(queue);
	pacelc_keep_plan(&plan,
					 "SELECT q.handler IS NULL, q.owner::pg_catalog.oid FROM pacelc.queues q"
					 " WHERE q.name OPERATOR(pg_catalog.=) $1", 1, argtypes);
	if (IsolationUsesXactSnapshot())
		rc = SPI_execute_snapshot(plan, values, NULL, GetLatestSnapshot(),
								  InvalidSnapshot, true, false, 1);
	else
		rc = SPI_execute_plan(plan, values, NULL, false, 1);	/* a new snapshot: after the queue lock */
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "enqueue could not look up its queue");
	if (SPI_processed == 0)
		return false;
	*consumer = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
	*owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
											SPI_tuptable->tupdesc, 2, &isnull));
	return true;
}

/*
 * The queue's owner and whether it has no handler (a consumer queue), read
 * with a new snapshot (after the queue lock; under REPEATABLE READ the
 * transaction's own may still show a dropped queue, see enqueue_execute).
 * One probe of the queues' primary key: this runs for every message, and a
 * cached plan's executor start and SPI cost more than the insert itself.
 * False: no such queue.
 */
static bool
enqueue_lookup(text *queue, bool *consumer, Oid *owner)
{
	Relation	rel;
	Relation	index = NULL;
	Oid			relid;
	Oid			indexid;
	TupleDesc	desc;
	AttrNumber	handler_att = InvalidAttrNumber;
	AttrNumber	owner_att = InvalidAttrNumber;
	AttrNumber	name_att = InvalidAttrNumber;
	TupleTableSlot *slot;
	Snapshot	snapshot;
	bool		found;
	bool		isnull;
	int			i;

	relid = get_relname_relid("queues", get_namespace_oid("pacelc", false));
	if (!OidIsValid(relid))
		return enqueue_lookup_sql(queue, consumer, owner);
	rel = table_open(relid, AccessShareLock);
	desc = RelationGetDescr(rel);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		if (strcmp(NameStr(att->attname), "handler") == 0)
			handler_att = att->attnum;
		else if (strcmp(NameStr(att->attname), "owner") == 0 &&
				 (att->atttypid == REGROLEOID || att->atttypid == OIDOID))
			owner_att = att->attnum;
		else if (strcmp(NameStr(att->attname), "name") == 0 && att->atttypid == TEXTOID)
			name_att = att->attnum;
	}
#if PG_VERSION_NUM >= 180000
	indexid = RelationGetPrimaryKeyIndex(rel, false);
#else
	indexid = RelationGetPrimaryKeyIndex(rel);
#endif
	if (OidIsValid(indexid))
		index = index_open(indexid, AccessShareLock);
	if (index == NULL || handler_att == InvalidAttrNumber ||
		owner_att == InvalidAttrNumber || name_att == InvalidAttrNumber ||
		index->rd_index->indnkeyatts != 1 || index->rd_rel->relam != BTREE_AM_OID ||
		index->rd_index->indkey.values[0] != name_att)
	{
		/* not the layout this code knows: the statement finds the row */
		if (index != NULL)
			index_close(index, AccessShareLock);
		table_close(rel, AccessShareLock);
		return enqueue_lookup_sql(queue, consumer, owner);
	}

	CommandCounterIncrement();
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	slot = table_slot_create(rel, NULL);
	found = pacelc_fastpath_lookup(rel, index, queue, snapshot, slot);
	if (found)
	{
		(void) slot_getattr(slot, handler_att, &isnull);
		*consumer = isnull;
		*owner = DatumGetObjectId(slot_getattr(slot, owner_att, &isnull));
	}
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snapshot);
	index_close(index, AccessShareLock);
	table_close(rel, AccessShareLock);
	return found;
}

/* The columns of pacelc.messages that the direct insert knows. */
typedef enum MessageColumn
{
	MCOL_NULL,					/* left null (or dropped) */
	MCOL_ID,
	MCOL_QUEUE,
	MCOL_PAYLOAD,
	MCOL_STATE,
	MCOL_ATTEMPTS,
	MCOL_RUN_AT,
	MCOL_ENQUEUED_AT,
} MessageColumn;

#define MESSAGE_COLUMNS_SET 7	/* of MCOL_ID to MCOL_ENQUEUED_AT */

static const struct
{
	const char *name;
	Oid			type;
	MessageColumn set;
}			message_columns[] = {
	{"id", INT8OID, MCOL_ID}, {"queue", TEXTOID, MCOL_QUEUE},
	{"payload", JSONBOID, MCOL_PAYLOAD}, {"state", TEXTOID, MCOL_STATE},
	{"attempts", INT4OID, MCOL_ATTEMPTS}, {"run_at", TIMESTAMPTZOID, MCOL_RUN_AT},
	{"leased_until", TIMESTAMPTZOID, MCOL_NULL},
	{"idempotency_key", TEXTOID, MCOL_NULL},
	{"enqueued_at", TIMESTAMPTZOID, MCOL_ENQUEUED_AT},
	{"done_at", TIMESTAMPTZOID, MCOL_NULL}, {"last_error", TEXTOID, MCOL_NULL},
	{"last_sqlstate", TEXTOID, MCOL_NULL},
	{"last_error_at", TIMESTAMPTZOID, MCOL_NULL},
};

/*
 * What each attribute of pacelc.messages gets from the direct insert,
 * worked out once per relcache build of the table (message_checks.builds):
 * per call, comparing every column's name with every known name cost more
 * than forming the row.  ok is false for a table laid out otherwise: a
 * column of a newer version (SQL knows its default), one a superuser gave
 * another type (SQL converts the value), or a column it sets that is gone.
 */
typedef struct MessageLayout
{
	uint64		builds;			/* 0: not worked out */
	bool		ok;
	int			natts;
	MessageColumn *set;			/* per attribute, in TopMemoryContext */
} MessageLayout;

static PacelcRowChecks message_checks;
static MessageLayout message_layout;

static void
message_layout_load(TupleDesc desc)
{
	int			nset = 0;
	int			i,
				j;

	if (message_layout.set != NULL)
		pfree(message_layout.set);
	message_layout.set = MemoryContextAlloc(TopMemoryContext,
											sizeof(MessageColumn) * Max(desc->natts, 1));
	message_layout.natts = desc->natts;
	message_layout.ok = true;
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		message_layout.set[i] = MCOL_NULL;
		if (att->attisdropped)
			continue;
		for (j = 0; j < lengthof(message_columns); j++)
			if (strcmp(message_columns[j].name, NameStr(att->attname)) == 0)
				break;
		if (j == lengthof(message_columns) || att->atttypid != message_columns[j].type)
			message_layout.ok = false;
		else if (message_columns[j].set != MCOL_NULL)
		{
			message_layout.set[i] = message_columns[j].set;
			nset++;
		}
	}
	if (nset != MESSAGE_COLUMNS_SET)
		message_layout.ok = false;
	message_layout.builds = message_checks.builds;
}

/*
 * Inserts a message without an idempotency key straight into the heap and
 * its indexes, as COPY does: no plan, no executor start, no CHECK
 * constraint compiled anew per call (fastpath.c checks the row as the
 * statement would); about half of what the INSERT
 * statement cost per message.  Every column is set here (the values the
 * table's defaults and constraints would give); a table with a column this
 * code does not know (a newer version's) makes it return 0, and the caller
 * takes the SQL way.
 */
static int64
enqueue_insert_direct(text *queue, Datum payload, TimestampTz run_at)
{
	Oid			relid;
	Oid			seqid;
	Relation	rel;
	TupleDesc	desc;
	Datum	   *values;
	bool	   *nulls;
	int64		id;
	int			i;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
	List	   *recheck;
	Oid			nsp = get_namespace_oid("pacelc", false);

	relid = get_relname_relid("messages", nsp);
	seqid = get_relname_relid("messages_id_seq", nsp);
	if (!OidIsValid(relid) || !OidIsValid(seqid))
		return 0;
	rel = table_open(relid, RowExclusiveLock);
	desc = RelationGetDescr(rel);
	/* (pins the owner's search path if the insert runs a DBA's code) */
	if (!pacelc_fastpath_insert_ok(&message_checks, rel))
	{
		/* a rule, a trigger, row security...: the statement does it */
		table_close(rel, RowExclusiveLock);
		return 0;
	}
	/* (insert_ok() rebuilt message_checks if the table changed) */
	if (message_layout.builds != message_checks.builds ||
		message_layout.natts != desc->natts)
		message_layout_load(desc);
	if (!message_layout.ok)
	{
		/* not the layout this code knows: the statement says what to do */
		table_close(rel, RowExclusiveLock);
		return 0;
	}
	values = palloc0(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);
	id = nextval_internal(seqid, false);
	for (i = 0; i < desc->natts; i++)
	{
		nulls[i] = false;
		switch (message_layout.set[i])
		{
			case MCOL_ID:
				values[i] = Int64GetDatum(id);
				break;
			case MCOL_QUEUE:
				values[i] = PointerGetDatum(queue);
				break;
			case MCOL_PAYLOAD:
				values[i] = payload;
				break;
			case MCOL_STATE:
				values[i] = CStringGetTextDatum("ready");
				break;
			case MCOL_ATTEMPTS:
				values[i] = Int32GetDatum(0);
				break;
			case MCOL_RUN_AT:
				values[i] = TimestampTzGetDatum(run_at);
				break;
			case MCOL_ENQUEUED_AT:
				values[i] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
				break;
			case MCOL_NULL:
				nulls[i] = true;
				break;
		}
	}

	estate = CreateExecutorState();
	slot = ExecInitExtraTupleSlot(estate, desc, &TTSOpsHeapTuple);
	ExecStoreHeapTuple(heap_form_tuple(desc, values, nulls), slot, true);
	pacelc_fastpath_check_row(&message_checks, rel, slot);
	table_tuple_insert(rel, slot, GetCurrentCommandId(true), 0, NULL);
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	pacelc_fastpath_open_indices(&message_checks, rri, false);
#if PG_VERSION_NUM >= 160000
	recheck = ExecInsertIndexTuples(rri, slot, estate, false, false, NULL, NIL, false);
#else
	recheck = ExecInsertIndexTuples(rri, slot, estate, false, false, NULL, NIL);
#endif
	list_free(recheck);
	ExecCloseIndices(rri);
	ExecResetTupleTable(estate->es_tupleTable, false);
	FreeExecutorState(estate);
	table_close(rel, NoLock);
	CommandCounterIncrement();
	return id;
}

/* What a new message asks for at commit: a NOTIFY, or a worker's wake-up. */
static void
enqueue_committed(text *queue, bool consumer, Interval *delay, TimestampTz run_at, int64 id)
{
	if (consumer)
	{
		char		channel[NAMEDATALEN];
		char		payload[32];

		snprintf(channel, sizeof(channel), "pacelc_%s", text_to_cstring(queue));
		snprintf(payload, sizeof(payload), INT64_FORMAT, id);
		Async_Notify(channel, payload);
	}
	else
		pacelc_worker_wake_queue(MyDatabaseId,
								 delay->month == 0 && delay->day == 0 && delay->time == 0 ? 0 : run_at,
								 text_to_cstring(queue));
}

/*
 * enqueue(queue, payload, delay, idempotency_key): adds a message in the
 * caller's transaction.  At commit the database's worker is woken (for a
 * queue with a handler; a delayed message only if it is due before the
 * worker's planned wake-up), and LISTENers of pacelc_<queue> get the id (a
 * queue without a handler: NOTIFY serializes all notifying commits on one
 * global lock, so worker-served queues rely on the latch alone).  The same
 * key on the same queue returns the first message's id and adds nothing.
 */
static Datum
enqueue_body(PG_FUNCTION_ARGS)
{
	text	   *queue;
	Interval   *delay;
	TimestampTz run_at;
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	bool		consumer;
	bool		inserted;
	Oid			caller = pacelc_caller();
	Oid			owner;
	int64		id;

	pacelc_check_loaded();
	pacelc_require_arg(fcinfo, 0, "queue");
	pacelc_require_arg(fcinfo, 1, "payload");
	pacelc_require_arg(fcinfo, 2, "delay");
	PreventCommandIfReadOnly("enqueue()");
	/* before run_at is computed: no worker's scan floor passes it */
	pacelc_worker_note_enqueue();
	queue = PG_GETARG_TEXT_PP(0);
	delay = PG_GETARG_INTERVAL_P(2);
	run_at = pacelc_future_timestamp(delay, "delay", true, 100);
	pacelc_check_key(PG_ARGISNULL(3) ? NULL : PG_GETARG_TEXT_PP(3));

	values[0] = PointerGetDatum(queue);
	values[1] = PG_GETARG_DATUM(1);
	values[2] = TimestampTzGetDatum(run_at);
	values[3] = PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3);
	if (PG_ARGISNULL(3))
		nulls[3] = 'n';
	/* before 0.3 every role with EXECUTE could produce into every queue */
	values[4] = BoolGetDatum(!pacelc_schema_03() || pacelc_is_admin(caller));
	values[5] = ObjectIdGetDatum(caller);

	(void) queue_lock(queue, AccessShareLock, false);
	SPI_connect();
	if (PG_ARGISNULL(3))
	{
		/* no key: look the queue up, judge the caller, insert directly */
		if (!enqueue_lookup(queue, &consumer, &owner))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("queue \"%s\" does not exist", text_to_cstring(queue))));
		if (!DatumGetBool(values[4]) && !pacelc_acts_for(caller, owner) &&
			!pacelc_queue_allowed(caller, owner, queue, false))
			pacelc_queue_denied(queue, false);
		id = enqueue_insert_direct(queue, values[1], run_at);
		if (id != 0)
		{
			SPI_finish();
			enqueue_committed(queue, consumer, delay, run_at, id);
			PG_RETURN_INT64(id);
		}
		values[4] = BoolGetDatum(true);		/* judged */
	}
	inserted = enqueue_execute(queue, values, nulls, &consumer, &owner, &id);
	if (!inserted && !pacelc_acts_for(caller, owner) && pacelc_schema_03())
	{
		/* not the owner's: the insert needs a grant */
		if (!pacelc_queue_allowed(caller, owner, queue, false))
			pacelc_queue_denied(queue, false);
		values[4] = BoolGetDatum(true);
		inserted = enqueue_execute(queue, values, nulls, &consumer, &owner, &id);
	}
	if (!inserted)
		id = enqueue_existing(queue, values[3]);
	SPI_finish();

	if (inserted)
		enqueue_committed(queue, consumer, delay, run_at, id);
	PG_RETURN_INT64(id);
}

PACELC_OWNER_ENTRY_LAZY(pacelc_enqueue, enqueue_body)
