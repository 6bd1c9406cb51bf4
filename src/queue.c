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
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
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

static void
wake_launcher(void)
{
	PGPROC	   *launcher;

	SpinLockAcquire(&queue_shared->mutex);
	queue_shared->rescan = true;
	launcher = queue_shared->launcher;
	SpinLockRelease(&queue_shared->mutex);
	if (launcher)
		SetLatch(&launcher->procLatch);
}

/*
 * Wakes this database's worker, or the launcher if no worker serves the
 * database yet.  Called after commit, so it must not fail.
 */
static void
wake_database_worker(Oid dbid, TimestampTz by)
{
	PGPROC	   *proc = NULL;
	TimestampTz planned = 0;
	int			i;

	SpinLockAcquire(&queue_shared->mutex);
	for (i = 0; i < queue_shared->nslots; i++)
		if (queue_shared->slots[i].in_use && queue_shared->slots[i].dbid == dbid)
		{
			proc = queue_shared->slots[i].proc;
			planned = queue_shared->slots[i].next_wakeup;
		}
	SpinLockRelease(&queue_shared->mutex);
	if (proc == NULL)
		wake_launcher();
	else if (by == 0 || by < planned)
		SetLatch(&proc->procLatch);
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
			wake_at_commit = false;
			wake_by = 0;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			wake_at_commit = false;
			wake_by = 0;
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
 * CREATE EXTENSION calls this so a new database is served at once.  It is a
 * no-op without the preloaded library, so that the extension can still be
 * created (and then explain itself with 55000 on use).
 */
Datum
pacelc_wake_launcher(PG_FUNCTION_ARGS)
{
	if (pacelc_preloaded && queue_shared != NULL)
		wake_launcher();
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
	PG_RETURN_OID(GetOuterUserId());
}
