/*-------------------------------------------------------------------------
 *
 * queue.c
 *		Shared state of the compensation queue: who serves which database,
 *		and the wake-ups that make the worker react at once.
 *
 * The queue itself lives in tables (install script, section 3); the
 * background workers (worker.c) consume it.  What needs shared memory is
 * small: one slot per database worker holding its PGPROC, so that a
 * committing enqueue can set that worker's latch, and the launcher's PGPROC,
 * so that CREATE EXTENSION or an enqueue in an unserved database starts a
 * worker without waiting for the next scan.
 *
 * enqueue() lives here too: it is the queue's hot path (producers call it
 * thousands of times a second in their own transactions), so it is written
 * in C with one saved plan instead of PL/pgSQL.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "pacelc.h"

typedef struct QueueShared
{
	slock_t		mutex;
	PGPROC	   *launcher;
	bool		rescan;			/* launcher: look at every database again */
	int			nslots;
	PacelcWorkerSlot slots[FLEXIBLE_ARRAY_MEMBER];
} QueueShared;

static QueueShared *queue_shared = NULL;

/* Set by an enqueue in this transaction; acted upon at commit. */
static bool wake_at_commit = false;

/* Earliest hold expiry this transaction created (0: none). */
static TimestampTz wake_by = 0;

/* CREATE EXTENSION in this transaction: tell the launcher at commit. */
static bool launcher_at_commit = false;

/* In a worker, the owner of the queue whose handler is running. */
static Oid	handler_role = InvalidOid;

static void queue_xact_callback(XactEvent event, void *arg);

void
queue_init(void)
{
	RegisterXactCallback(queue_xact_callback, NULL);
}

/* One slot per possible background worker process is always enough. */
static int
queue_nslots(void)
{
	return max_worker_processes;
}

Size
queue_shmem_size(void)
{
	return add_size(offsetof(QueueShared, slots),
					mul_size(queue_nslots(), sizeof(PacelcWorkerSlot)));
}

void
queue_shmem_request(void)
{
}

void
queue_shmem_startup(void)
{
	bool		found;

	queue_shared = ShmemInitStruct("pacelc queue", queue_shmem_size(), &found);
	if (!found)
	{
		SpinLockInit(&queue_shared->mutex);
		queue_shared->launcher = NULL;
		queue_shared->rescan = false;
		queue_shared->nslots = queue_nslots();
		memset(queue_shared->slots, 0,
			   sizeof(PacelcWorkerSlot) * queue_shared->nslots);
	}
}

/*
 * Claims the slot of a database for the calling worker.  Returns false if
 * another live worker already serves it (the caller then exits).
 */
bool
queue_claim_slot(Oid dbid)
{
	int			i,
				free_slot = -1;
	bool		ok = false;

	SpinLockAcquire(&queue_shared->mutex);
	for (i = 0; i < queue_shared->nslots; i++)
	{
		PacelcWorkerSlot *slot = &queue_shared->slots[i];

		if (slot->in_use && slot->dbid == dbid)
		{
			free_slot = -2;
			break;
		}
		if (!slot->in_use && free_slot == -1)
			free_slot = i;
	}
	if (free_slot >= 0)
	{
		queue_shared->slots[free_slot].in_use = true;
		queue_shared->slots[free_slot].dbid = dbid;
		queue_shared->slots[free_slot].proc = MyProc;
		queue_shared->slots[free_slot].pid = MyProcPid;
		queue_shared->slots[free_slot].next_wakeup = 0;
		ok = true;
	}
	SpinLockRelease(&queue_shared->mutex);
	return ok;
}

/* Frees the calling worker's slot; registered with on_shmem_exit. */
void
queue_release_slot(int code, Datum arg)
{
	int			i;

	SpinLockAcquire(&queue_shared->mutex);
	for (i = 0; i < queue_shared->nslots; i++)
		if (queue_shared->slots[i].in_use &&
			queue_shared->slots[i].pid == MyProcPid)
			queue_shared->slots[i].in_use = false;
	SpinLockRelease(&queue_shared->mutex);
}

/* Is some worker serving this database? */
bool
queue_database_served(Oid dbid)
{
	int			i;
	bool		served = false;

	SpinLockAcquire(&queue_shared->mutex);
	for (i = 0; i < queue_shared->nslots; i++)
		if (queue_shared->slots[i].in_use && queue_shared->slots[i].dbid == dbid)
			served = true;
	SpinLockRelease(&queue_shared->mutex);
	return served;
}

/* The launcher announces itself (or NULL when it exits). */
void
queue_set_launcher(PGPROC *proc)
{
	SpinLockAcquire(&queue_shared->mutex);
	queue_shared->launcher = proc;
	SpinLockRelease(&queue_shared->mutex);
}

/* A database worker publishes when it plans to wake up next. */
void
queue_set_next_wakeup(int64 when)
{
	int			i;

	SpinLockAcquire(&queue_shared->mutex);
	for (i = 0; i < queue_shared->nslots; i++)
		if (queue_shared->slots[i].in_use && queue_shared->slots[i].pid == MyProcPid)
			queue_shared->slots[i].next_wakeup = when;
	SpinLockRelease(&queue_shared->mutex);
}

/*
 * A hold with a ttl: if it expires before the worker would wake up anyway,
 * wake the worker at commit so the expiry is on time.  Long ttls (the
 * usual case) cost nothing.
 */
void
queue_wake_worker_by(int64 when)
{
	if (wake_by == 0 || when < wake_by)
		wake_by = when;
}

/* Launcher: was a rescan asked for since the last call? */
bool
queue_take_rescan(void)
{
	bool		rescan;

	SpinLockAcquire(&queue_shared->mutex);
	rescan = queue_shared->rescan;
	queue_shared->rescan = false;
	SpinLockRelease(&queue_shared->mutex);
	return rescan;
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
			if (queue_shared != NULL && wake_at_commit)
				wake_database_worker(MyDatabaseId, 0);
			else if (queue_shared != NULL && wake_by != 0)
				wake_database_worker(MyDatabaseId, wake_by);
			if (queue_shared != NULL && launcher_at_commit)
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
	if (pacelc_preloaded && queue_shared != NULL)
		launcher_at_commit = true;
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(pacelc_outer_user);

/*
 * The role the session acts as (SET ROLE included), also from inside a
 * SECURITY DEFINER function: queues are owned by, and their handlers run
 * as, the role that created them, not the extension's owner.
 */
Datum
pacelc_outer_user(PG_FUNCTION_ARGS)
{
	if (OidIsValid(handler_role))
		PG_RETURN_OID(handler_role);
	PG_RETURN_OID(GetOuterUserId());
}

/*
 * The worker runs handlers with SetUserIdAndSecContext, which leaves the
 * outer user at the worker's bootstrap superuser: a handler calling
 * alter_queue() or drop_queue() must be judged as the queue's owner it runs
 * as, not as that superuser.
 */
void
queue_set_handler_role(Oid role)
{
	handler_role = role;
}

/* ---------------------------------------------------------------------
 * enqueue()
 * --------------------------------------------------------------------- */

/*
 * One statement looks the queue up (no row: the queue does not exist) and
 * inserts the message unless its idempotency key is taken.  No foreign key
 * and no lock on the queue row: a busy queue's producers must not meet on
 * one row; drop_queue() instead waits until no one inserts messages.
 */
static const char *const enqueue_sql =
"WITH q AS (SELECT q.handler IS NULL AS consumer FROM pacelc.queues q WHERE q.name = $1),"
"     ins AS (INSERT INTO pacelc.messages AS m (queue, payload, run_at, idempotency_key)"
"             SELECT $1, $2, $3, $4 FROM q"
"             ON CONFLICT (queue, idempotency_key) WHERE idempotency_key IS NOT NULL"
"             DO NOTHING RETURNING m.id)"
"SELECT q.consumer, (SELECT ins.id FROM ins) FROM q";

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

PG_FUNCTION_INFO_V1(pacelc_enqueue);

/*
 * enqueue(queue, payload, delay, idempotency_key): adds a message in the
 * caller's transaction.  At commit the database's worker is woken (for a
 * queue with a handler; a delayed message only if it is due before the
 * worker's planned wake-up), and LISTENers of pacelc_<queue> get the id (a
 * queue without a handler: NOTIFY serializes all notifying commits on one
 * global lock, so worker-served queues rely on the latch alone).  The same
 * key on the same queue returns the first message's id and adds nothing.
 */
Datum
pacelc_enqueue(PG_FUNCTION_ARGS)
{
	text	   *queue;
	Interval   *delay;
	Interval	zero;
	TimestampTz run_at;
	Oid			argtypes[4] = {TEXTOID, JSONBOID, TIMESTAMPTZOID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	bool		isnull;
	bool		consumer;
	bool		inserted;
	int64		id;

	pacelc_check_loaded();
	pacelc_require_arg(fcinfo, 0, "queue");
	pacelc_require_arg(fcinfo, 1, "payload");
	pacelc_require_arg(fcinfo, 2, "delay");
	PreventCommandIfReadOnly("enqueue()");
	queue = PG_GETARG_TEXT_PP(0);
	delay = PG_GETARG_INTERVAL_P(2);
	memset(&zero, 0, sizeof(zero));
	if (DatumGetBool(DirectFunctionCall2(interval_lt, IntervalPGetDatum(delay),
										 IntervalPGetDatum(&zero))))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("delay must not be negative")));
	pacelc_check_key(PG_ARGISNULL(3) ? NULL : PG_GETARG_TEXT_PP(3));
	run_at = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
													 TimestampTzGetDatum(GetCurrentTimestamp()),
													 IntervalPGetDatum(delay)));

	values[0] = PointerGetDatum(queue);
	values[1] = PG_GETARG_DATUM(1);
	values[2] = TimestampTzGetDatum(run_at);
	values[3] = PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3);
	if (PG_ARGISNULL(3))
		nulls[3] = 'n';

	SPI_connect();
	if (SPI_execute_plan(pacelc_keep_plan(&enqueue_plan, enqueue_sql, 4, argtypes),
						 values, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "enqueue failed");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("queue %s does not exist",
						quote_literal_cstr(text_to_cstring(queue)))));
	consumer = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									 SPI_tuptable->tupdesc, 2, &isnull));
	inserted = !isnull;
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
			queue_wake_worker_by(run_at);
	}
	PG_RETURN_INT64(id);
}
