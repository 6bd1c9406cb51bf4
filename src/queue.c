/*-------------------------------------------------------------------------
 *
 * queue.c
 *		The compensation queue's SQL-callable C: enqueue(), the rights on a
 *		queue, the per-queue lock, and the wake-ups at commit.
 *
 * The queue itself lives in tables (install script, section 3); the
 * background workers (worker.c, which also keeps their shared registry)
 * consume it.  A committing enqueue wakes its database's workers through
 * pacelc_wake_database(); CREATE EXTENSION asks the launcher for a worker.
 *
 * enqueue() lives here: it is the queue's hot path (producers call it
 * thousands of times a second in their own transactions), so it is written
 * in C with one saved plan instead of PL/pgSQL.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "commands/async.h"
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
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "privilege.h"
#include "queue.h"
#include "support.h"
#include "worker.h"

/* Set by an enqueue in this transaction; acted upon at commit. */
static bool wake_at_commit = false;

/* Earliest hold expiry this transaction created (0: none). */
static TimestampTz wake_by = 0;

/* CREATE EXTENSION in this transaction: tell the launcher at commit. */
static bool launcher_at_commit = false;

static void queue_xact_callback(XactEvent event, void *arg);

void
pacelc_queue_init(void)
{
	RegisterXactCallback(queue_xact_callback, NULL);
}

/*
 * A hold with a ttl: if it expires before the worker would wake up anyway,
 * wake the worker at commit so the expiry is on time.  Long ttls (the
 * usual case) cost nothing.
 */
void
pacelc_queue_wake_worker_by(int64 when)
{
	if (wake_by == 0 || when < wake_by)
		wake_by = when;
}

/*
 * Wakes this database's worker, or the launcher if no worker serves the
 * database yet.  Called after commit, so it must not fail.
 */
static void
wake_database_worker(Oid dbid, TimestampTz by)
{
	/* the workers' registry lives in worker.c (issue 12) */
	pacelc_wake_database(dbid, by);
}

static void
queue_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (pacelc_preloaded && wake_at_commit)
				wake_database_worker(MyDatabaseId, 0);
			else if (pacelc_preloaded && wake_by != 0)
				wake_database_worker(MyDatabaseId, wake_by);
			if (pacelc_preloaded && launcher_at_commit)
				pacelc_want_worker(MyDatabaseId, true);
			wake_at_commit = false;
			wake_by = 0;
			launcher_at_commit = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			wake_at_commit = false;
			wake_by = 0;
			launcher_at_commit = false;
			break;
		default:
			break;
	}
}

PG_FUNCTION_INFO_V1(pacelc_wake_worker_at_commit);

/* enqueue() and friends: the worker should look at the queue after commit. */
Datum
pacelc_wake_worker_at_commit(PG_FUNCTION_ARGS)
{
	pacelc_check_loaded();
	pacelc_require_internal(fcinfo);
	wake_at_commit = true;
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
		launcher_at_commit = true;
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
"             FROM pacelc.queues q WHERE q.name = $1),"
"     ins AS (INSERT INTO pacelc.messages AS m (queue, payload, run_at, idempotency_key)"
"             SELECT $1, $2, $3, $4 FROM q"
"              WHERE $5 OR pg_catalog.pg_has_role($6, q.owner::pg_catalog.oid, 'USAGE')"
"             ON CONFLICT (queue, idempotency_key) WHERE idempotency_key IS NOT NULL"
"             DO NOTHING RETURNING m.id)"
"SELECT q.consumer, (SELECT ins.id FROM ins), q.owner FROM q";

/*
 * The key was taken: the first message's id.  A statement of its own, so
 * that in READ COMMITTED its snapshot sees a message whose transaction
 * committed while the insert waited for it.
 */
static const char *const enqueue_key_sql =
"SELECT m.id FROM pacelc.messages m WHERE m.queue = $1 AND m.idempotency_key = $2";

static SPIPlanPtr enqueue_plan = NULL;
static SPIPlanPtr enqueue_key_plan = NULL;

/* The id of the message that already holds this queue's idempotency key. */
static int64
enqueue_existing(text *queue, Datum key)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	bool		isnull = true;
	int64		id = 0;

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
	SPIPlanPtr	plan = pacelc_keep_plan(&enqueue_plan, enqueue_sql, 6, argtypes);
	int			rc;

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
	{
		if (consumer)
		{
			char		channel[NAMEDATALEN];
			char		payload[32];

			snprintf(channel, sizeof(channel), "pacelc_%s", text_to_cstring(queue));
			snprintf(payload, sizeof(payload), INT64_FORMAT, id);
			Async_Notify(channel, payload);
		}
		else if (delay->month == 0 && delay->day == 0 && delay->time == 0)
			wake_at_commit = true;
		else
			pacelc_queue_wake_worker_by(run_at);
	}
	PG_RETURN_INT64(id);
}

PACELC_OWNER_ENTRY(pacelc_enqueue, enqueue_body)
