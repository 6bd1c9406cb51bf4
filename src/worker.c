/*-------------------------------------------------------------------------
 *
 * worker.c
 *		The launcher and the per-database pools of background workers.
 *
 * The launcher is a static background worker, started by the postmaster
 * once recovery has finished (so it does nothing on a standby and starts
 * after a promotion) and restarted after a crash.  It connects to no
 * database, reads pg_database and starts the first worker of each database
 * that wants one (optionally only those in pacelc.databases).  It remembers
 * what it learnt per database: "no pacelc here" (until CREATE EXTENSION
 * asks again), a start that found no free slot, a worker that left because
 * the database is being dropped, and a worker that exited early; each backs
 * that database off on its own.  It wakes for the databases that want a
 * worker, not for every enqueue, and logs slot exhaustion once per naptime.
 *
 * The first worker of a database (index 0) starts the others of its pool
 * (pacelc.workers_per_database) and does the housekeeping; every worker
 * handles messages and, when due, expires holds.  A round takes one queue
 * at a time, round-robin, among those with due messages and fewer workers
 * than their concurrency limit (pacelc.queue_concurrency):
 *
 *	1. it locks a batch of due messages (FOR UPDATE SKIP LOCKED) and
 *	   records their ids in a file of its own (inflight.c), so that an
 *	   attempt that never finishes (the worker gave up on a handler, or
 *	   died, or the server crashed) still counts;
 *	2. in the same transaction it runs their handlers, each call in its
 *	   own subtransaction, as the queue's owner, bounded by
 *	   pacelc.handler_timeout; the handler's effects and the message's
 *	   "done" (its attempt counted) commit together.
 *
 * (Before 0.6 step 1 committed a lease per message in a transaction of its
 * own: a second write of every message and a second commit per batch.  That
 * way remains for a message whose earlier attempt never finished and for a
 * worker that cannot write its file; see handle_batch().)
 *
 * A batch stops taking new messages after a time budget, when holds are
 * due to expire, and on SIGHUP or shutdown: nothing one queue does can
 * stall expiry or the other queues for long.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>
#include <unistd.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/twophase.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_database.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "commands/prepare.h"
#include "commands/sequence.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "portability/instr_time.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "inflight.h"
#include "privilege.h"
#include "support.h"
#include "worker.h"

PGDLLEXPORT void pacelc_launcher_main(Datum arg);
PGDLLEXPORT void pacelc_worker_main(Datum arg);

static int	worker_batch = 100;
static int	worker_linger_ms = 1;
static int	handler_timeout_ms = 30000;
static int	worker_naptime_s = 5;
static int	launcher_naptime_s = 30;
static int	done_retention_s = 86400;
static int	workers_per_database = -1;
static int	queue_concurrency = 1;
static char *worker_databases = NULL;

#define MAX_DATABASES 1024

/* A batch stops taking new messages after this long (one handler may run over). */
#define BATCH_BUDGET_MS		200
/* Every worker looks at hold expiry at least this often while busy. */
#define EXPIRY_CHECK_MS		250
/* A pick that found one candidate queue holds this long (see pick_queue()). */
#define PICK_REUSE_MS		100
/* An idle worker looks this often whether its database is being dropped. */
#define DROP_CHECK_MS		1000
/* The launcher re-checks a database without pacelc this rarely. */
#define NO_EXTENSION_RECHECK_S	600
/* Scans from the start (safety nets) at least this far apart ... */
#define FULL_SCAN_MS		10000
/* ... and this many times their last duration (their share of the time) */
#define SAFETY_NET_SHARE	100

/*
 * The pace of a safety net (the full purge, a worker's full scans): it
 * comes every every_ms, SAFETY_NET_SHARE times the shorter of its last two
 * runs and min_ms at least.  Durations are read on the monotonic clock: a
 * step of the wall clock (NTP, a virtual machine resumed) is no work.  And
 * the shorter of two: a machine that stalled once in the middle of a run
 * (a paused virtual machine, a stopped process, a commit waiting for a
 * synchronous standby) puts off the next run by a hundred times that
 * stall for one run at most, whereas the cost of the entries a long
 * transaction leaves grows run after run.
 */
typedef struct SafetyNet
{
	int			min_ms;
	int			every_ms;		/* TimestampDifferenceExceeds() takes an int */
	double		last_ms;		/* the last run's duration; 0: none yet */
} SafetyNet;

/* Notes a run of a safety net that took took_ms. */
static void
safety_net_ran(SafetyNet *net, double took_ms)
{
	double		wait_ms = SAFETY_NET_SHARE * Min(took_ms, net->last_ms);

	net->last_ms = took_ms;
	net->every_ms = (int) Min(Max(wait_ms, (double) net->min_ms), (double) INT_MAX);
}

/* Milliseconds on the monotonic clock since start. */
static double
ms_since(instr_time start)
{
	instr_time	now;

	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, start);
	return INSTR_TIME_GET_MILLISEC(now);
}

/* ---------------------------------------------------------------------
 * Shared registry: the workers of each database, and what the launcher
 * and the workers tell each other about databases.
 * --------------------------------------------------------------------- */

typedef struct PoolSlot
{
	Oid			dbid;			/* InvalidOid: free */
	int			index;			/* 0: the database's first worker */
	int			pid;
	PGPROC	   *proc;
	bool		idle;			/* sleeping on its latch */
	TimestampTz next_wakeup;	/* when it plans to wake up (0: unknown) */
	char		queue[NAMEDATALEN]; /* queue it works on, "" if none */
	int			queue_limit;	/* and that queue's concurrency limit */
	int			batch;			/* messages of its open batch: locked, not
								 * leased (pacelc_private.worker_batches) */
	TimestampTz rescan_from;	/* lower the scan floors to this; DT_NOEND: no */
	char		reuse[NAMEDATALEN]; /* the queue it may take again without the
									 * pick statement, "" if none */
	TimestampTz repick_at;		/* from then on, take no queue again without
								 * the pick statement (DT_NOEND: no such time;
								 * see reuse_pick()) */
	char		repick_queue[NAMEDATALEN];	/* for work in this queue only, ""
											 * for any */
} PoolSlot;

typedef struct DbState
{
	Oid			dbid;			/* InvalidOid: free entry */
	bool		wanted;			/* asked for a worker (enqueue, CREATE
								 * EXTENSION) */
	bool		retry_now;		/* CREATE EXTENSION: forget what we learnt */
	bool		no_extension;	/* a worker found no pacelc here */
	bool		leaving;		/* a worker left for DROP/ALTER DATABASE */
	TimestampTz expiry_last;	/* when a worker last expired holds here */
	TimestampTz expiry_claimed_until;	/* a worker is expiring holds now */
	TimestampTz expiry_floor;	/* see pacelc_worker_expiry_floor() */
	TimestampTz expiry_full_last;	/* when it was last lowered to the start */
	SafetyNet	expiry_net;		/* and how often it is */
	uint64		expiry_gen;		/* new (unique) whenever it is lowered */
} DbState;

#define MAX_DB_STATES 1024

/*
 * Per backend: the earliest time its open transaction started enqueueing
 * (0: it has not).  Written under the slot's own spinlock, the clock read
 * inside it; see "Scan floors" below.
 */
typedef struct PendingSlot
{
	slock_t		mutex;
	TimestampTz since;
} PendingSlot;

typedef struct WorkerShared
{
	slock_t		mutex;
	PGPROC	   *launcher;
	int			nslots;
	int			npending;
	PendingSlot *pending;		/* npending entries, after the slots */
	uint32		orphans;		/* bumped by a worker that left a batch */
	uint64		expiry_gens;	/* the last DbState.expiry_gen handed out */
	DbState		dbs[MAX_DB_STATES];
	PoolSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} WorkerShared;

static WorkerShared *wshared = NULL;
static PoolSlot *my_slot = NULL;
static int	my_index = 0;

/* One per PGPROC: backends, auxiliary processes, prepared transactions. */
static int
pending_slots(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
}

static Size
pool_slots_size(void)
{
	return MAXALIGN(add_size(offsetof(WorkerShared, slots),
							 mul_size(max_worker_processes, sizeof(PoolSlot))));
}

Size
pacelc_worker_shmem_size(void)
{
	return add_size(pool_slots_size(), mul_size(pending_slots(), sizeof(PendingSlot)));
}

void
pacelc_worker_shmem_startup(void)
{
	bool		found;
	int			i;

	wshared = ShmemInitStruct("pacelc workers", pacelc_worker_shmem_size(), &found);
	if (!found)
	{
		memset(wshared, 0, pacelc_worker_shmem_size());
		SpinLockInit(&wshared->mutex);
		wshared->nslots = max_worker_processes;
		wshared->npending = pending_slots();
		wshared->pending = (PendingSlot *) ((char *) wshared + pool_slots_size());
		for (i = 0; i < wshared->npending; i++)
			SpinLockInit(&wshared->pending[i].mutex);
	}
}

/* The database's entry; the caller holds the mutex.  NULL if full. */
static DbState *
db_state(Oid dbid, bool create)
{
	DbState    *free_entry = NULL;
	int			i;

	for (i = 0; i < MAX_DB_STATES; i++)
	{
		if (wshared->dbs[i].dbid == dbid)
			return &wshared->dbs[i];
		if (free_entry == NULL && wshared->dbs[i].dbid == InvalidOid)
			free_entry = &wshared->dbs[i];
	}
	if (!create || free_entry == NULL)
		return NULL;
	memset(free_entry, 0, sizeof(DbState));
	free_entry->dbid = dbid;
	free_entry->expiry_floor = DT_NOBEGIN;
	free_entry->expiry_gen = ++wshared->expiry_gens;
	free_entry->expiry_net.min_ms = FULL_SCAN_MS;
	free_entry->expiry_net.every_ms = FULL_SCAN_MS;
	return free_entry;
}

/*
 * Asks the launcher for a worker in a database.  Sets its latch only when
 * the database was not asking already: producers of a database the
 * launcher cannot serve (no slot free) do not make it spin.  Called after
 * commit, so it must not fail.
 */
void
pacelc_want_worker(Oid dbid, bool retry_now)
{
	PGPROC	   *launcher = NULL;
	DbState    *db;

	if (wshared == NULL)
		return;
	SpinLockAcquire(&wshared->mutex);
	db = db_state(dbid, true);
	if (db != NULL && (!db->wanted || (retry_now && !db->retry_now)))
	{
		db->wanted = true;
		if (retry_now)
		{
			db->retry_now = true;
			db->no_extension = false;
		}
		launcher = wshared->launcher;
	}
	SpinLockRelease(&wshared->mutex);
	if (launcher)
		SetLatch(&launcher->procLatch);
}

/*
 * Wakes a worker of the database after a commit that gave it work: an idle
 * one if there is one (so a worker busy with a slow handler does not delay
 * other queues), else the first.  by != 0: only if that is earlier than the
 * worker planned to wake up.  No worker: asks the launcher.  Must not fail.
 *
 * queue (not NULL: the commit gave work to that queue only): while as many
 * workers as its concurrency limit work on it, nobody is woken.  An idle
 * worker could not take the queue and would find that out at the cost of a
 * round, for every such commit (thousands a second under a steady stream
 * of enqueues).  Each worker on the queue scans it again after giving it
 * up (worker_round()), with a snapshot taken after this commit, which was
 * visible before the queue was seen taken here.
 *
 * repick (the commit enqueued into a handler queue: queue, or an unknown
 * one if NULL): unless that queue is at its limit, every worker of the
 * database not on it runs the pick statement for its next batch, from by on
 * (0: at once), instead of taking its last queue again (reuse_pick()):
 * busy with another queue, it would otherwise see this one only when its
 * reuse ran out, up to PICK_REUSE_MS later, with no idle worker to take it.
 */
static void
wake_database(Oid dbid, TimestampTz by, const char *queue, bool repick)
{
	PGPROC	   *proc = NULL;
	PoolSlot   *pick = NULL;
	bool		any = false;
	int			working = 0;
	int			limit = 0;
	int			i;

	if (wshared == NULL)
		return;
	SpinLockAcquire(&wshared->mutex);
	for (i = 0; i < wshared->nslots; i++)
	{
		PoolSlot   *s = &wshared->slots[i];

		if (s->dbid != dbid)
			continue;
		any = true;
		if (queue != NULL && strcmp(s->queue, queue) == 0)
		{
			working++;
			limit = Max(limit, s->queue_limit);
		}
		if (pick == NULL || (s->idle && !pick->idle))
			pick = s;
	}
	if (working > 0 && working >= limit)
		pick = NULL;			/* those working on it will see the work */
	else if (repick)
	{
		for (i = 0; i < wshared->nslots; i++)
		{
			PoolSlot   *s = &wshared->slots[i];

			if (s->dbid != dbid ||
				(queue != NULL &&
				 (strcmp(s->queue, queue) == 0 || strcmp(s->reuse, queue) == 0)))
				continue;
			if (s->repick_at == DT_NOEND)
				strlcpy(s->repick_queue, queue ? queue : "", NAMEDATALEN);
			else if (queue == NULL || strcmp(s->repick_queue, queue) != 0)
				s->repick_queue[0] = '\0';
			if (by < s->repick_at)
				s->repick_at = by;
		}
	}
	if (pick != NULL &&
		(by == 0 || pick->next_wakeup == 0 || by < pick->next_wakeup))
	{
		proc = pick->proc;
		pick->idle = false;
	}
	SpinLockRelease(&wshared->mutex);
	if (!any)
		pacelc_want_worker(dbid, false);
	else if (proc != NULL)
		SetLatch(&proc->procLatch);
}

/*
 * Messages became due again at times from "from" on, which a worker's scan
 * floor may have passed: every worker of the database lowers its floors
 * there before its next scan (DT_NOBEGIN: scans from the start).
 */
static void
lower_floors(Oid dbid, TimestampTz from)
{
	int			i;

	SpinLockAcquire(&wshared->mutex);
	for (i = 0; i < wshared->nslots; i++)
	{
		PoolSlot   *s = &wshared->slots[i];

		if (s->dbid == dbid && from < s->rescan_from)
			s->rescan_from = from;
	}
	SpinLockRelease(&wshared->mutex);
}

/* ---------------------------------------------------------------------
 * What a transaction asks of the workers when it commits
 *
 * queue.c (enqueue, nack, retry, ...) and stock.c (a hold with a ttl) call
 * pacelc_worker_wake(); the wake-ups happen at commit, never for a
 * transaction that aborts.
 * --------------------------------------------------------------------- */

static Oid	wake_dbid = InvalidOid;
static TimestampTz wake_by = DT_NOEND;	/* 0: at once; DT_NOEND: nothing */

/* The one queue all of this transaction's wake-ups are for, if any. */
static char wake_queue[NAMEDATALEN] = "";
static bool wake_one_queue = false;
static bool wake_enqueued = false;	/* into a handler queue */
static bool rescan_at_commit = false;
static bool launcher_at_commit = false;
static bool pending_set = false;

/*
 * At commit, wake a worker of database dbid (this transaction's): by 0 at
 * once, else only if by is earlier than the worker planned to wake up.
 */
void
pacelc_worker_wake(Oid dbid, TimestampTz by)
{
	wake_dbid = dbid;
	if (by < wake_by)
		wake_by = by;
	wake_one_queue = false;
}

/*
 * The same for work in one queue (enqueue): when all of a transaction's
 * wake-ups are for one queue, its commit wakes nobody while that queue has
 * as many workers as it may have (wake_database()).
 */
void
pacelc_worker_wake_queue(Oid dbid, TimestampTz by, const char *queue)
{
	if (wake_by == DT_NOEND)
	{
		strlcpy(wake_queue, queue, NAMEDATALEN);
		wake_one_queue = true;
	}
	else if (strncmp(wake_queue, queue, NAMEDATALEN - 1) != 0)
		wake_one_queue = false;
	wake_dbid = dbid;
	if (by < wake_by)
		wake_by = by;
	wake_enqueued = true;
}

/*
 * At commit, make the workers scan their queues from the start once: this
 * transaction made messages due at times a worker may have passed (nack,
 * retry, a new handler), which enqueue() announces otherwise (below).
 */
void
pacelc_worker_rescan(Oid dbid)
{
	pacelc_worker_wake(dbid, 0);
	rescan_at_commit = true;
}

/* At commit, ask the launcher for a worker here (CREATE EXTENSION). */
void
pacelc_worker_request(void)
{
	launcher_at_commit = true;
}

/*
 * enqueue() calls this before it inserts: until the transaction ends, no
 * worker's scan floor (below) passes the time read here, which is at most
 * the run_at of every message the transaction inserts.  The clock is read
 * under the slot's lock, so a worker that read the slot before saw either
 * this time or a time earlier than it.
 */
void
pacelc_worker_note_enqueue(void)
{
	PendingSlot *slot;

	if (pending_set || wshared == NULL || MyProc == NULL)
		return;
	slot = &wshared->pending[PACELC_MY_PROCNO % wshared->npending];
	SpinLockAcquire(&slot->mutex);
	if (slot->since == 0)
		slot->since = GetCurrentTimestamp();
	SpinLockRelease(&slot->mutex);
	pending_set = true;
}

static void
clear_pending(void)
{
	PendingSlot *slot;

	if (!pending_set)
		return;
	slot = &wshared->pending[PACELC_MY_PROCNO % wshared->npending];
	SpinLockAcquire(&slot->mutex);
	slot->since = 0;
	SpinLockRelease(&slot->mutex);
	pending_set = false;
}

/*
 * Commit callbacks run after the transaction became visible to others: a
 * worker woken here, or one reading the cleared slot, sees its messages.
 */
static void
worker_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wshared != NULL)
			{
				clear_pending();
				if (rescan_at_commit)
					lower_floors(wake_dbid, DT_NOBEGIN);
				if (wake_by != DT_NOEND)
					wake_database(wake_dbid, wake_by,
								  wake_one_queue ? wake_queue : NULL, wake_enqueued);
				if (launcher_at_commit)
					pacelc_want_worker(MyDatabaseId, true);
			}
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* a prepared enqueue: found by the periodic full scan */
			if (wshared != NULL)
				clear_pending();
			break;
		default:
			return;
	}
	wake_dbid = InvalidOid;
	wake_by = DT_NOEND;
	wake_one_queue = false;
	wake_enqueued = false;
	rescan_at_commit = false;
	launcher_at_commit = false;
}

/*
 * Wakes one idle sibling: there is more work in this worker's queue than it
 * takes, and room for another worker on it.  At the queue's limit (by
 * default one worker a queue) a sibling could not take it: woken for every
 * full batch under load, it would only pay for a round that finds nothing.
 * Work in other queues wakes a worker itself (wake_database()).
 */
static void
wake_sibling(void)
{
	PGPROC	   *proc = NULL;
	PoolSlot   *idle = NULL;
	int			working = 0;
	int			i;

	SpinLockAcquire(&wshared->mutex);
	for (i = 0; i < wshared->nslots; i++)
	{
		PoolSlot   *s = &wshared->slots[i];

		if (s->dbid != MyDatabaseId)
			continue;
		if (strcmp(s->queue, my_slot->queue) == 0)
			working++;
		else if (s != my_slot && s->idle && idle == NULL)
			idle = s;
	}
	if (idle != NULL && working < my_slot->queue_limit)
	{
		idle->idle = false;
		proc = idle->proc;
	}
	SpinLockRelease(&wshared->mutex);
	if (proc)
		SetLatch(&proc->procLatch);
}

static bool
claim_pool_slot(Oid dbid, int index)
{
	int			i;
	PoolSlot   *free_slot = NULL;

	SpinLockAcquire(&wshared->mutex);
	for (i = 0; i < wshared->nslots; i++)
	{
		PoolSlot   *s = &wshared->slots[i];

		if (s->dbid == dbid && s->index == index)
		{
			free_slot = NULL;
			break;
		}
		if (s->dbid == InvalidOid && free_slot == NULL)
			free_slot = s;
	}
	if (free_slot)
	{
		memset(free_slot, 0, sizeof(PoolSlot));
		free_slot->dbid = dbid;
		free_slot->index = index;
		free_slot->pid = MyProcPid;
		free_slot->proc = MyProc;
		free_slot->rescan_from = DT_NOEND;
		free_slot->repick_at = DT_NOEND;
		my_slot = free_slot;
	}
	SpinLockRelease(&wshared->mutex);
	return free_slot != NULL;
}

static void
release_pool_slot(int code, Datum arg)
{
	if (my_slot == NULL)
		return;
	SpinLockAcquire(&wshared->mutex);
	my_slot->dbid = InvalidOid;
	my_slot->queue[0] = '\0';
	my_slot->batch = 0;
	SpinLockRelease(&wshared->mutex);
	my_slot = NULL;
}

static bool
pool_slot_taken(Oid dbid, int index)
{
	int			i;
	bool		taken = false;

	SpinLockAcquire(&wshared->mutex);
	for (i = 0; i < wshared->nslots; i++)
		if (wshared->slots[i].dbid == dbid && wshared->slots[i].index == index)
			taken = true;
	SpinLockRelease(&wshared->mutex);
	return taken;
}

static void
set_idle(bool idle, TimestampTz next_wakeup)
{
	SpinLockAcquire(&wshared->mutex);
	my_slot->idle = idle;
	my_slot->next_wakeup = next_wakeup;
	SpinLockRelease(&wshared->mutex);
}

/* Records what the launcher should know about this database. */
static void
report_database(bool no_extension, bool leaving)
{
	DbState    *db;

	SpinLockAcquire(&wshared->mutex);
	db = db_state(MyDatabaseId, true);
	if (db)
	{
		db->no_extension = no_extension;
		db->leaving = leaving;
	}
	SpinLockRelease(&wshared->mutex);
}

/*
 * Claims the right to expire this database's holds now, if no worker did
 * in the last min_ms and none is at it.
 */
static bool
claim_expiry(TimestampTz now, int min_ms)
{
	DbState    *db;
	bool		ok = false;

	SpinLockAcquire(&wshared->mutex);
	db = db_state(MyDatabaseId, true);
	if (db == NULL)
		ok = true;
	else if (db->expiry_claimed_until <= now &&
			 TimestampDifferenceExceeds(db->expiry_last, now, min_ms))
	{
		db->expiry_claimed_until = TimestampTzPlusMilliseconds(now, 10000);
		ok = true;
	}
	SpinLockRelease(&wshared->mutex);
	return ok;
}

static void
release_expiry(TimestampTz now)
{
	DbState    *db;

	SpinLockAcquire(&wshared->mutex);
	db = db_state(MyDatabaseId, false);
	if (db)
	{
		db->expiry_claimed_until = 0;
		db->expiry_last = now;
	}
	SpinLockRelease(&wshared->mutex);
}

/*
 * The expiry floor of a database: no hold in state 'held' that is or can
 * become visible expires before it.  The expiry scans (expire_holds(), the
 * plans' next expiry) start there: beside a long transaction the expiry
 * index keeps an entry for every hold ended since it began, and a scan
 * from the start steps over all of them, four times a second.  The
 * housekeeping that expired holds raises it after it commits, unless a
 * floor was lowered meanwhile (expiry_gen), to at most
 *	- the earliest expiry its plan saw among held holds (locked ones too:
 *	  the plan takes no locks), and
 *	- a second before the oldest transaction that held a transaction id
 *	  began, read before that plan's snapshot: a hold expires after the
 *	  clock read when it was made (its ttl ends after now), which its
 *	  transaction makes holding an id already (insert_reservation() takes
 *	  it first), so one made by a transaction that had no id yet is made
 *	  later still (-infinity when a writer's start is not shown).
 * It goes back to the start when SQL did what the workers cannot see
 * coming (COMMIT PREPARED, which may commit holds made long before, at
 * once, whether a worker serves the database or not: reset_expiry_floor();
 * not nack() or retry(), which make no hold), and now and then in any
 * case (a hold written by hand or restored): every FULL_SCAN_MS, but no
 * sooner than SAFETY_NET_SHARE times the duration of the last expiry from
 * the start.
 * DT_NOBEGIN when unknown.
 */
TimestampTz
pacelc_worker_expiry_floor(Oid dbid)
{
	DbState    *db;
	TimestampTz floor = DT_NOBEGIN;

	if (wshared == NULL)
		return DT_NOBEGIN;
	SpinLockAcquire(&wshared->mutex);
	db = db_state(dbid, false);
	if (db != NULL)
		floor = db->expiry_floor;
	SpinLockRelease(&wshared->mutex);
	return floor;
}

/*
 * Lowers a database's expiry floor to the start; the caller holds the
 * mutex.  A new generation, never handed out before (not even to an entry
 * of another database, or to this one's entry freed and made again), so a
 * raise computed before finds it changed.
 */
static void
lower_expiry_floor(DbState *db)
{
	if (db == NULL)
		return;					/* no floor to lower, none raised */
	db->expiry_floor = DT_NOBEGIN;
	db->expiry_gen = ++wshared->expiry_gens;
}

/* Lowers a database's expiry floor to the start (COMMIT PREPARED). */
static void
reset_expiry_floor(Oid dbid)
{
	if (wshared == NULL)
		return;
	SpinLockAcquire(&wshared->mutex);
	lower_expiry_floor(db_state(dbid, false));
	SpinLockRelease(&wshared->mutex);
}

/*
 * Before the housekeeping reads anything: lowers this database's expiry
 * floor to the start when that is due (or the floor lies ahead of the
 * clock, which stepped back), and returns the generation a raise must
 * find (*full: it lowered it).
 */
static uint64
expiry_floor_begin(bool *full)
{
	DbState    *db;
	uint64		gen;
	TimestampTz now = GetCurrentTimestamp();

	*full = false;
	SpinLockAcquire(&wshared->mutex);
	db = db_state(MyDatabaseId, false);

	/*
	 * Another worker's clock read a moment later is no step back: a second
	 * of slack (the floor itself lies a second behind its maker's clock)
	 */
	if (db != NULL &&
		(now < db->expiry_full_last - USECS_PER_SEC || db->expiry_floor > now ||
		 TimestampDifferenceExceeds(db->expiry_full_last, now, db->expiry_net.every_ms)))
	{
		lower_expiry_floor(db);
		db->expiry_full_last = now;
		*full = true;
	}
	gen = (db != NULL) ? db->expiry_gen : 0;	/* 0: no raise */
	SpinLockRelease(&wshared->mutex);
	return gen;
}

/*
 * After the housekeeping committed: raises the floor unless it was lowered
 * since expiry_floor_begin(); took_ms: how long its expiry from the start
 * took (full), which spaces the next one.
 */
static void
expiry_floor_end(uint64 gen, TimestampTz floor, bool full, double took_ms)
{
	DbState    *db;

	SpinLockAcquire(&wshared->mutex);
	db = db_state(MyDatabaseId, false);
	if (db != NULL)
	{
		if (gen != 0 && db->expiry_gen == gen && floor > db->expiry_floor)
			db->expiry_floor = floor;
		if (full)
			safety_net_ran(&db->expiry_net, took_ms);
	}
	SpinLockRelease(&wshared->mutex);
}

/* The queue this worker works on; "" for none. */
static void
set_my_queue(const char *queue)
{
	SpinLockAcquire(&wshared->mutex);
	strlcpy(my_slot->queue, queue, NAMEDATALEN);
	SpinLockRelease(&wshared->mutex);
}

/*
 * The number of messages of the batch this worker runs in one transaction
 * (0: none): a batch is locked, not leased, so the table alone does not
 * show those messages as in flight.
 */
static void
set_my_batch(int n)
{
	if (my_slot == NULL)
		return;
	SpinLockAcquire(&wshared->mutex);
	my_slot->batch = n;
	SpinLockRelease(&wshared->mutex);
}

PG_FUNCTION_INFO_V1(pacelc_private_worker_batches);

/*
 * pacelc_private.worker_batches() -> (queue text, messages int): per queue
 * of this database, the messages the workers' open batches hold, for the
 * view queue_status (in flight).  A snapshot of shared memory, not of the
 * table: a batch that commits meanwhile is counted in neither or both.
 */
Datum
pacelc_private_worker_batches(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	  (*queues)[NAMEDATALEN];
	int		   *counts;
	int			n = 0,
				i;

	InitMaterializedSRF(fcinfo, 0);
	if (wshared == NULL)
		return (Datum) 0;
	queues = palloc(sizeof(*queues) * Max(wshared->nslots, 1));
	counts = palloc(sizeof(int) * Max(wshared->nslots, 1));
	SpinLockAcquire(&wshared->mutex);
	for (i = 0; i < wshared->nslots; i++)
	{
		PoolSlot   *slot = &wshared->slots[i];

		if (slot->dbid != MyDatabaseId || slot->batch <= 0 || slot->queue[0] == '\0')
			continue;
		memcpy(queues[n], slot->queue, NAMEDATALEN);
		counts[n] = slot->batch;
		n++;
	}
	SpinLockRelease(&wshared->mutex);
	for (i = 0; i < n; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = CStringGetTextDatum(queues[i]);
		values[1] = Int32GetDatum(counts[i]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * Claims a queue if fewer than limit workers of this database work on it.
 */
static bool
claim_queue(const char *queue, int limit)
{
	int			i,
				n = 0;
	bool		ok;

	SpinLockAcquire(&wshared->mutex);
	for (i = 0; i < wshared->nslots; i++)
	{
		PoolSlot   *s = &wshared->slots[i];

		if (s != my_slot && s->dbid == MyDatabaseId && strcmp(s->queue, queue) == 0)
			n++;
	}
	ok = n < limit;
	if (ok)
	{
		strlcpy(my_slot->queue, queue, NAMEDATALEN);
		my_slot->queue_limit = limit;
	}
	SpinLockRelease(&wshared->mutex);
	return ok;
}

/* ---------------------------------------------------------------------
 * Registration
 * --------------------------------------------------------------------- */

/* The default pool: one worker per core, at least 2, at most 4. */
static int
default_pool_size(void)
{
	/* read once: the first worker asks before every batch (ensure_helpers) */
	static long ncpu = 0;

	if (ncpu <= 0)
		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	return (int) Max(2, Min(ncpu, 4));
}

static int
pool_size(void)
{
	int			n = workers_per_database > 0 ? workers_per_database : default_pool_size();

	return Min(n, max_worker_processes);
}

/* Does a worker serve this database now? */
static bool
database_served(Oid dbid)
{
	bool		served = false;
	int			i;

	if (wshared == NULL)
		return false;
	SpinLockAcquire(&wshared->mutex);
	for (i = 0; i < wshared->nslots && !served; i++)
		served = wshared->slots[i].dbid == dbid;
	SpinLockRelease(&wshared->mutex);
	return served;
}

static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/*
 * COMMIT PREPARED may commit an enqueue.  Its transaction announced that it
 * was enqueueing (pacelc_worker_note_enqueue()) only until PREPARE, so the
 * workers' scan floors may have passed its messages since: when the
 * statement commits, every worker of the database scans from the start
 * once, and one is woken.  (A database no worker serves has no scan
 * floors; its first worker scans from the start.  Its expiry floor is
 * shared and stays: it is lowered in any case.)
 */
static void
worker_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
					  bool readOnlyTree, ProcessUtilityContext context,
					  ParamListInfo params, QueryEnvironment *queryEnv,
					  DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	bool		commit_prepared;

	commit_prepared = IsA(parsetree, TransactionStmt) &&
		((TransactionStmt *) parsetree)->kind == TRANS_STMT_COMMIT_PREPARED;
	if (!commit_prepared)
	{
		pacelc_next_utility(prev_ProcessUtility, pstmt, queryString, readOnlyTree,
							context, params, queryEnv, dest, qc);
		return;
	}
	PG_TRY();
	{
		pacelc_next_utility(prev_ProcessUtility, pstmt, queryString, readOnlyTree,
							context, params, queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		/*
		 * Its holds are visible now (or it failed), whether or not a worker
		 * serves the database: the expiry floor, which expire_holds() called
		 * by hand reads too, goes back to the start at once, not at the end
		 * of a transaction that may still fail.
		 */
		reset_expiry_floor(MyDatabaseId);
	}
	PG_END_TRY();
	if (database_served(MyDatabaseId))
		pacelc_worker_rescan(MyDatabaseId);
}

void
pacelc_worker_init(void)
{
	BackgroundWorker bgw;

	RegisterXactCallback(worker_xact_callback, NULL);
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = worker_ProcessUtility;

	/*
	 * pg_upgrade runs both clusters in binary-upgrade mode: no worker may
	 * touch a database that is being restored or read for the upgrade.
	 */
	if (IsBinaryUpgrade)
		return;

	DefineCustomIntVariable("pacelc.worker_batch",
							"Most messages a worker handles per transaction.",
							"A batch also ends after 200 ms, when holds are due to expire, and on reload or shutdown.",
							&worker_batch, 100, 1, 10000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pacelc.worker_linger",
							"How long a worker waits for more messages after a batch that emptied its queue.",
							"Only after a batch of two or more messages (under load), holding the queue: larger "
							"batches cost less per message, each message waits up to this much longer. 0 turns it off.",
							&worker_linger_ms, 1, 0, 100,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pacelc.handler_timeout",
							"Time limit for one handler call.",
							"A handler still running then is cancelled, again and again; one that still does not return "
							"makes the worker give up and restart. Either way the attempt counts as failed.",
							&handler_timeout_ms, 30000, 1, INT_MAX / 4,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pacelc.worker_naptime",
							"Longest sleep of a database worker between rounds.",
							"Enqueues wake the worker at once; this bounds how late expiry and housekeeping can run.",
							&worker_naptime_s, 5, 1, 3600,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("pacelc.launcher_naptime",
							"How often the launcher looks for databases to serve.",
							"CREATE EXTENSION pacelc wakes it at once.",
							&launcher_naptime_s, 30, 1, 3600,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("pacelc.done_retention",
							"How long handled messages are kept before the worker deletes them (0 keeps them).",
							"Also how long enqueue() remembers an idempotency key.",
							&done_retention_s, 86400, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("pacelc.workers_per_database",
							"Background workers per database that has pacelc (-1: one per CPU, 2 to 4).",
							NULL, &workers_per_database, -1, -1, 64,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pacelc.queue_concurrency",
							"Most workers that handle one queue's messages at once.",
							"1 keeps each queue's first attempts in order; a queue's own concurrency overrides it.",
							&queue_concurrency, 1, 1, 64,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("pacelc.databases",
							   "Databases the worker serves (comma-separated); empty serves every database that has the extension.",
							   NULL, &worker_databases, "",
							   PGC_SIGHUP, GUC_LIST_INPUT, NULL, NULL, NULL);

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 5;
	strlcpy(bgw.bgw_library_name, "pacelc", BGW_MAXLEN);
	strlcpy(bgw.bgw_function_name, "pacelc_launcher_main", BGW_MAXLEN);
	strlcpy(bgw.bgw_name, "pacelc launcher", BGW_MAXLEN);
	strlcpy(bgw.bgw_type, "pacelc launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&bgw);
}

/* ---------------------------------------------------------------------
 * Launcher
 * --------------------------------------------------------------------- */

typedef struct DbCandidate
{
	Oid			dbid;
	char		name[NAMEDATALEN];
} DbCandidate;

/* What the launcher remembers of a database. */
typedef struct LauncherDb
{
	Oid			dbid;			/* hash key */
	TimestampTz next_try;		/* no start before this */
	int			failures;		/* starts in a row that failed or ended early */
	TimestampTz started_at;
	BackgroundWorkerHandle *handle; /* the worker we started, if any */
	bool		pending;		/* to (re)start when its backoff ends */
	bool		seen;			/* listed by the last scan */
} LauncherDb;

/* Is this database named in pacelc.databases (or is the list empty)? */
static bool
database_wanted(const char *name)
{
	char	   *raw;
	List	   *names;
	ListCell   *lc;
	bool		wanted = false;

	if (worker_databases == NULL || worker_databases[0] == '\0')
		return true;
	raw = pstrdup(worker_databases);
	if (!SplitIdentifierString(raw, ',', &names))
		return false;
	foreach(lc, names)
		if (strcmp((char *) lfirst(lc), name) == 0)
			wanted = true;
	list_free(names);
	pfree(raw);
	return wanted;
}

/* Lists the databases that accept connections, like autovacuum does. */
static int
list_databases(DbCandidate *out, int max)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	int			n = 0;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (n < max && HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (!db->datallowconn || db->datistemplate)
			continue;
		if (!database_wanted(NameStr(db->datname)))
			continue;
		out[n].dbid = db->oid;
		strlcpy(out[n].name, NameStr(db->datname), NAMEDATALEN);
		n++;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return n;
}

/*
 * Registers a database worker.  The launcher starts index 0 and is told
 * when it stops; index 0 starts the rest of its pool and is told likewise.
 */
static bool
start_database_worker(Oid dbid, const char *dbname, int index,
					  BackgroundWorkerHandle **handle)
{
	BackgroundWorker bgw;
	MemoryContext old;
	bool		ok;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
#ifdef BGWORKER_INTERRUPTIBLE
	/* DROP DATABASE and friends may terminate it (PostgreSQL 19) */
	bgw.bgw_flags |= BGWORKER_INTERRUPTIBLE;
#endif
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(bgw.bgw_library_name, "pacelc", BGW_MAXLEN);
	strlcpy(bgw.bgw_function_name, "pacelc_worker_main", BGW_MAXLEN);
	if (index == 0)
		snprintf(bgw.bgw_name, BGW_MAXLEN, "pacelc worker for %s", dbname);
	else
		snprintf(bgw.bgw_name, BGW_MAXLEN, "pacelc worker %d for %s", index + 1, dbname);
	strlcpy(bgw.bgw_type, "pacelc worker", BGW_MAXLEN);
	bgw.bgw_main_arg = ObjectIdGetDatum(dbid);
	memcpy(bgw.bgw_extra, &index, sizeof(int));
	bgw.bgw_notify_pid = MyProcPid;
	/* the handle outlives the caller's pass or round */
	old = MemoryContextSwitchTo(TopMemoryContext);
	ok = RegisterDynamicBackgroundWorker(&bgw, handle);
	MemoryContextSwitchTo(old);
	return ok;
}

/* Milliseconds of exponential backoff after n failures, from 1 s to cap. */
static long
backoff_ms(int n, long cap_ms)
{
	long		ms = 1000;

	while (n-- > 1 && ms < cap_ms)
		ms *= 2;
	return Min(ms, cap_ms);
}

/*
 * One pass of the launcher.  A full pass (every launcher_naptime) starts
 * a worker for each database whose backoff is over; otherwise only the
 * databases that asked for one, and those whose worker just stopped.
 * Returns when it wants to run again (DT_NOEND: at the next full pass).
 */
static TimestampTz
launcher_pass(HTAB *dbs_hash, bool full, TimestampTz *last_exhausted_log)
{
	DbCandidate *dbs = palloc(sizeof(DbCandidate) * MAX_DATABASES);
	int			n = list_databases(dbs, MAX_DATABASES);
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz next = DT_NOEND;
	long		naptime_ms = launcher_naptime_s * 1000L;
	int			nfailed = 0;
	int			i;
	HASH_SEQ_STATUS seq;
	LauncherDb *e;

	hash_seq_init(&seq, dbs_hash);
	while ((e = hash_seq_search(&seq)) != NULL)
		e->seen = false;

	for (i = 0; i < n; i++)
	{
		Oid			dbid = dbs[i].dbid;
		bool		found;
		bool		exited = false;
		DbState		st;
		DbState    *sh;

		e = hash_search(dbs_hash, &dbid, HASH_ENTER, &found);
		if (!found)
		{
			e->next_try = 0;
			e->failures = 0;
			e->handle = NULL;
			e->pending = false;
		}
		e->seen = true;

		/* has the worker we started stopped? */
		if (e->handle != NULL)
		{
			pid_t		pid;

			if (GetBackgroundWorkerPid(e->handle, &pid) != BGWH_STOPPED)
				continue;		/* starting or running */
			pfree(e->handle);
			e->handle = NULL;
			exited = true;
		}

		/* what its workers and its users told us */
		memset(&st, 0, sizeof(st));
		SpinLockAcquire(&wshared->mutex);
		sh = db_state(dbid, false);
		if (sh)
		{
			st = *sh;
			sh->retry_now = false;
			sh->leaving = false;
		}
		SpinLockRelease(&wshared->mutex);

		if (pool_slot_taken(dbid, 0))
			continue;			/* served (e.g. by a worker of our
								 * predecessor) */

		if (exited)
		{
			if (st.no_extension)
			{
				e->failures = 0;
				e->next_try = TimestampTzPlusMilliseconds(now, NO_EXTENSION_RECHECK_S * 1000L);
			}
			else if (st.leaving)
				e->next_try = TimestampTzPlusMilliseconds(now, 10000);
			else
			{
				/*
				 * gave up on a handler, or failed: come back soon, not in a
				 * loop
				 */
				if (TimestampDifferenceExceeds(e->started_at, now, 60000))
					e->failures = 0;
				e->failures++;
				e->next_try = TimestampTzPlusMilliseconds(now, backoff_ms(e->failures, naptime_ms));
				e->pending = true;
			}
		}
		if (st.retry_now)
		{
			e->failures = 0;
			e->next_try = 0;
		}
		if (!full && !st.wanted && !e->pending)
			continue;
		if (e->next_try > now)
		{
			if ((st.wanted || e->pending) && e->next_try < next)
				next = e->next_try;
			continue;
		}
		if (start_database_worker(dbid, dbs[i].name, 0, &e->handle))
		{
			e->started_at = now;
			e->pending = false;
			SpinLockAcquire(&wshared->mutex);
			sh = db_state(dbid, true);
			if (sh)
				sh->wanted = false;
			SpinLockRelease(&wshared->mutex);
		}
		else
		{
			e->handle = NULL;
			e->failures++;
			e->next_try = TimestampTzPlusMilliseconds(now, backoff_ms(e->failures, naptime_ms));
			e->pending = true;
			if (e->next_try < next)
				next = e->next_try;
			nfailed++;
		}
	}

	if (nfailed > 0 &&
		TimestampDifferenceExceeds(*last_exhausted_log, now, naptime_ms))
	{
		ereport(LOG,
				(errmsg("pacelc launcher could not start a worker for %d database(s): no background worker slot is free",
						nfailed),
				 errhint("Increase \"max_worker_processes\", or name the databases to serve in \"pacelc.databases\".")));
		*last_exhausted_log = now;
	}

	/* forget databases that are gone */
	hash_seq_init(&seq, dbs_hash);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		if (e->seen || e->handle != NULL)
			continue;
		SpinLockAcquire(&wshared->mutex);
		{
			DbState    *sh = db_state(e->dbid, false);

			if (sh)
				sh->dbid = InvalidOid;
		}
		SpinLockRelease(&wshared->mutex);
		(void) hash_search(dbs_hash, &e->dbid, HASH_REMOVE, NULL);
	}
	pfree(dbs);
	return next;
}

/* Withdraws the launcher's latch from shared memory when it exits. */
static void
launcher_exit(int code, Datum arg)
{
	SpinLockAcquire(&wshared->mutex);
	if (wshared->launcher == MyProc)
		wshared->launcher = NULL;
	SpinLockRelease(&wshared->mutex);
}

void
pacelc_launcher_main(Datum arg)
{
	HASHCTL		ctl;
	HTAB	   *dbs_hash;
	TimestampTz next_full = 0;
	TimestampTz next_pass = 0;
	TimestampTz last_exhausted_log = 0;
	MemoryContext pass_context;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("pacelc launcher");

	SpinLockAcquire(&wshared->mutex);
	wshared->launcher = MyProc;
	SpinLockRelease(&wshared->mutex);
	before_shmem_exit(launcher_exit, (Datum) 0);

	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(LauncherDb);
	ctl.hcxt = TopMemoryContext;
	dbs_hash = hash_create("pacelc launcher databases", 64, &ctl,
						   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	pass_context = AllocSetContextCreate(TopMemoryContext, "pacelc launcher pass",
										 ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		TimestampTz now;
		bool		full;
		long		sleep_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			/* pacelc.databases may name other databases now */
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			next_full = 0;
		}
		now = GetCurrentTimestamp();
		full = now >= next_full;

		/* woken by a stopping worker, a database asking, or a timer */
		{
			MemoryContext old = MemoryContextSwitchTo(pass_context);

			next_pass = launcher_pass(dbs_hash, full, &last_exhausted_log);
			MemoryContextSwitchTo(old);
			MemoryContextReset(pass_context);
		}
		if (full)
			next_full = TimestampTzPlusMilliseconds(now, launcher_naptime_s * 1000L);

		now = GetCurrentTimestamp();
		{
			TimestampTz wake = Min(next_full, next_pass);
			long		secs;
			int			usecs;

			TimestampDifference(now, wake, &secs, &usecs);
			sleep_ms = Max(10, secs * 1000L + usecs / 1000 + 1);
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* ---------------------------------------------------------------------
 * Database worker
 * --------------------------------------------------------------------- */

static char *my_dbname = NULL;

static void
begin_work(const char *what)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, what);
}

static void
end_work(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

static void
exec_sql(const char *sql)
{
	if (SPI_execute(sql, false, 0) < 0)
		elog(ERROR, "pacelc worker: \"%s\" failed", sql);
}

/* Exits quietly when the database has no (or no longer any) pacelc. */
static void
exit_if_no_extension(void)
{
	bool		present;

	StartTransactionCommand();
	present = OidIsValid(get_extension_oid("pacelc", true));
	CommitTransactionCommand();
	if (!present)
	{
		/* the launcher will not come back before CREATE EXTENSION asks */
		if (my_index == 0)
			report_database(true, false);
		proc_exit(0);
	}
}

/*
 * DROP DATABASE (and ALTER DATABASE RENAME or SET TABLESPACE) holds an
 * AccessExclusiveLock on the database while it waits up to 5 s for the
 * other sessions to leave.  The worker is a superuser session the
 * database's owner may not terminate, so it leaves by itself when it sees
 * that lock, and the launcher stays away for a while.
 */
static void
leave_if_database_locked(void)
{
	LOCKTAG		tag;

	SET_LOCKTAG_OBJECT(tag, InvalidOid, DatabaseRelationId, MyDatabaseId, 0);
	if (LockAcquire(&tag, AccessShareLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
	{
		report_database(false, true);
		ereport(LOG,
				(errmsg("pacelc worker leaves database \"%s\", which is being dropped, renamed or moved",
						my_dbname)));
		proc_exit(0);
	}
	LockRelease(&tag, AccessShareLock, true);
}

/*
 * What the worker knows about its next work, refreshed by
 * plan_next_round(): when the next message of a handler queue is due and
 * when the next hold expires (DT_NOEND: none).
 */
static TimestampTz next_message_at = DT_NOBEGIN;
static TimestampTz next_expiry_at = DT_NOBEGIN;

static void plan_next_round(void);
static void forget_reuse(void);
static void ensure_helpers(void);

/* A drained message table larger than this is truncated (bytes). */
#define TRUNCATE_MIN_BYTES (1024 * 1024)

/* truncate_if_drained()'s subtransaction: lock, look, truncate. */
static void
truncate_locked(void *arg)
{
	SPIPlanPtr	plan;

	exec_sql("LOCK TABLE pacelc.messages IN ACCESS EXCLUSIVE MODE NOWAIT");
	/* the latest snapshot, whatever the database's isolation level */
	plan = SPI_prepare("SELECT 1 FROM pacelc.messages LIMIT 1", 0, NULL);
	if (plan != NULL &&
		SPI_execute_snapshot(plan, NULL, NULL, GetLatestSnapshot(), InvalidSnapshot,
							 true, false, 1) == SPI_OK_SELECT &&
		SPI_processed == 0)
		exec_sql("TRUNCATE pacelc.messages");
}

/*
 * Gives a drained message table its space back.  A long transaction
 * anywhere holds back the xmin horizon, so VACUUM can remove neither the
 * dead rows nor their index entries, and the table and its indexes grow
 * while it stays open (and VACUUM later frees the space but does not give
 * most of it back).  TRUNCATE needs no horizon: when no message is left
 * (every one handled and purged) and the table has grown past 1 MB, the
 * worker truncates it.  Its ACCESS EXCLUSIVE lock is asked for with NOWAIT,
 * in a subtransaction: an enqueue in flight, a dequeue, a reader or a
 * pg_dump holding the table makes it give up until the next housekeeping,
 * so producers never queue behind it; once it has the lock, nobody can add
 * a row, and the emptiness is judged with a snapshot taken after it.
 * (Rows a snapshot older than the truncation could still see are deleted
 * rows: TRUNCATE is not MVCC-safe for those, as the PostgreSQL manual says.)
 */
static void
truncate_if_drained(void)
{
	bool		isnull;
	int64		bytes;
	ErrorData  *edata;

	if (SPI_execute("SELECT pg_catalog.pg_total_relation_size('pacelc.messages'::pg_catalog.regclass)",
					true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		return;
	bytes = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (isnull || bytes < TRUNCATE_MIN_BYTES)
		return;
	edata = pacelc_run_in_subxact(truncate_locked, NULL);
	if (edata == NULL)
		return;
	if (edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
		ReThrowError(edata);
	FreeErrorData(edata);		/* in use: next time */
}

/*
 * Purge floor.  The worker deletes the messages handled more than
 * pacelc.done_retention ago through the done index (done_at).  Beside a
 * long transaction the entries of the messages it deleted stay in that
 * index, and a purge from its start would read, every naptime, every
 * message purged since the transaction began.  So each purge starts at a
 * floor below which every handled message visible to it was deleted by the
 * last purge that committed, and below which no message can be marked done
 * later:
 *	- at most that purge's cutoff (now - retention);
 *	- at most when the oldest transaction that held a transaction id as it
 *	  began started (read before its snapshot): a message marked done by a
 *	  transaction that had not committed then was marked at a later clock
 *	  (done_at is clock_timestamp() when it is marked), and one that gets
 *	  its id later marks later still;
 *	- one second less, for the clock read before a statement's first write.
 * A session with track_activities off has no start time to read
 * (pg_stat_activity shows its transaction id only): while one exists, the
 * next purge starts from the start.  A prepared transaction has none
 * either, but what it marked done is seen by no purge before it commits:
 * while it stays prepared the floors rise as if it were not there, and
 * the first purge that no longer lists it starts no higher than the floor
 * in force when a purge first listed it (that floor was computed before it
 * was prepared, so by the rules above it lies below what it marked; the
 * start if the clock stepped back since, as what it marked then may lie
 * below).  A purge that lists it may already see its commit, hence the
 * first purge that does not.  The purge starts from the start every
 * PURGE_FULL_MS in any case (a done_at someone wrote by hand), and at once
 * after the clock stepped back.  A floor never deletes a message early; at
 * worst one is deleted at the next full purge.  pacelc.purge_done() always
 * purges from the start.
 *
 * Beside a transaction open for hours that full purge reads every entry
 * left behind since it began, so it comes at most once per
 * SAFETY_NET_SHARE times the duration of a full purge (see SafetyNet and
 * FULL_SCAN_MS): its share of the worker's time stays bounded however old
 * the transaction.
 */
#define PURGE_FULL_MS 60000

static TimestampTz purge_floor = DT_NOBEGIN;
static TimestampTz last_full_purge = 0;
static SafetyNet full_purge_net = {PURGE_FULL_MS, PURGE_FULL_MS, 0};
static double full_purge_took_ms = 0;	/* this transaction's, if full */
static SPIPlanPtr writer_horizon_plan = NULL;
static SPIPlanPtr purge_prepared_plan = NULL;
static SPIPlanPtr purge_plan = NULL;

/*
 * The prepared transactions the last committed purge listed, each with the
 * floor in force when a purge first listed it; and those this purge lists,
 * taken over when it commits.  At most max_prepared_xacts each.
 */
typedef struct PreparedSeen
{
	TransactionId xid;
	TimestampTz floor;
} PreparedSeen;

static PreparedSeen *prepared_seen = NULL;
static int	nprepared_seen = 0;
static PreparedSeen *prepared_listed = NULL;
static int	nprepared_listed = 0;

/*
 * Notes the prepared transactions this purge lists (xids, an xid[] datum),
 * those it lists first with the floor in force (first_floor), and returns
 * the lowest floor of those the last purge listed and this one does not:
 * they may have committed since the last purge's snapshot.  DT_NOEND:
 * none.
 */
static TimestampTz
list_prepared(Datum xids, TimestampTz first_floor)
{
	ArrayType  *arr = DatumGetArrayTypeP(xids);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;
	int			j;
	TimestampTz gone = DT_NOEND;

	if (prepared_seen == NULL)
	{
		int			cap = Max(max_prepared_xacts, 1);

		prepared_seen = MemoryContextAlloc(TopMemoryContext, sizeof(PreparedSeen) * cap);
		prepared_listed = MemoryContextAlloc(TopMemoryContext, sizeof(PreparedSeen) * cap);
	}
	deconstruct_array(arr, XIDOID, sizeof(TransactionId), true, TYPALIGN_INT,
					  &elems, &nulls, &n);
	nprepared_listed = 0;
	for (i = 0; i < n && i < Max(max_prepared_xacts, 1); i++)
	{
		PreparedSeen *p = &prepared_listed[nprepared_listed++];

		p->xid = DatumGetTransactionId(elems[i]);
		p->floor = first_floor; /* first listed now */
		for (j = 0; j < nprepared_seen; j++)
			if (prepared_seen[j].xid == p->xid)
				p->floor = prepared_seen[j].floor;
	}
	if (n > nprepared_listed)
		gone = DT_NOBEGIN;		/* cannot happen: more than can be prepared */
	for (j = 0; j < nprepared_seen; j++)
	{
		bool		listed = false;

		for (i = 0; i < nprepared_listed; i++)
			listed = listed || prepared_listed[i].xid == prepared_seen[j].xid;
		if (!listed)
			gone = Min(gone, prepared_seen[j].floor);
	}
	return gone;
}

/*
 * When the oldest transaction holding a transaction id began (at most now),
 * from pg_stat_activity, which a transaction reads once: the caller reads
 * it before the snapshots it bounds.  A writer whose start is not shown
 * (track_activities off) counts as begun at the start of time: DT_NOBEGIN.
 */
static TimestampTz
writer_horizon(TimestampTz now)
{
	TimestampTz horizon;
	bool		isnull;

	pacelc_keep_plan(&writer_horizon_plan,
					 "SELECT pg_catalog.min(COALESCE(a.xact_start, '-infinity'::pg_catalog.timestamptz))"
					 "         FILTER (WHERE a.backend_xid IS NOT NULL)"
					 "  FROM pg_catalog.pg_stat_activity a", 0, NULL);
	if (SPI_execute_plan(writer_horizon_plan, NULL, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "pacelc worker: could not read the oldest writing transaction");
	horizon = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
												SPI_tuptable->tupdesc, 1, &isnull));
	SPI_freetuptable(SPI_tuptable);
	if (isnull || horizon > now)
		horizon = now;
	return horizon;
}

/*
 * Deletes old handled messages from the floor up; returns the next floor.
 * horizon: writer_horizon(), read before.  *full: it purged from the start
 * (the caller notes when, once committed).
 */
static TimestampTz
purge_old_messages(TimestampTz now, TimestampTz horizon, bool *full)
{
	TimestampTz cutoff;
	TimestampTz floor = purge_floor;
	Oid			argtypes[2] = {TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		values[2];
	bool		isnull;
	bool		stepped_back;
	TimestampTz prepared_gone;
	instr_time	started;

	/* after the horizon: one prepared in between is listed, or is in it */
	pacelc_keep_plan(&purge_prepared_plan,
					 "SELECT ARRAY(SELECT p.transaction FROM pg_catalog.pg_prepared_xacts p)",
					 0, NULL);
	if (SPI_execute_plan(purge_prepared_plan, NULL, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "pacelc worker: could not read the prepared transactions");
	/* a floor ahead of the clock: it stepped back since */
	stepped_back = now < last_full_purge || purge_floor > now;
	/* (and what one prepared since marked may lie below the floor) */
	prepared_gone = list_prepared(SPI_getbinval(SPI_tuptable->vals[0],
												SPI_tuptable->tupdesc, 1, &isnull),
								  stepped_back ? DT_NOBEGIN : purge_floor);
	SPI_freetuptable(SPI_tuptable);
	*full = stepped_back ||
		TimestampDifferenceExceeds(last_full_purge, now, full_purge_net.every_ms);
	if (*full)
		floor = DT_NOBEGIN;
	floor = Min(floor, prepared_gone);

	cutoff = GetCurrentTransactionStartTimestamp() -
		(TimestampTz) done_retention_s * USECS_PER_SEC;
	values[0] = TimestampTzGetDatum(cutoff);
	values[1] = TimestampTzGetDatum(floor);
	pacelc_keep_plan(&purge_plan,
					 "WITH d AS (DELETE FROM pacelc.messages m"
					 "            WHERE m.state = 'done' AND m.done_at < $1 AND m.done_at >= $2"
					 "           RETURNING m.id)"
					 "DELETE FROM pacelc.message_errors x"
					 " WHERE x.message_id = ANY (ARRAY(SELECT d.id FROM d))", 2, argtypes);
	INSTR_TIME_SET_CURRENT(started);
	if (SPI_execute_plan(purge_plan, values, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "pacelc worker: could not purge handled messages");
	if (*full)
		full_purge_took_ms = ms_since(started);
	if (horizon == DT_NOBEGIN)
		return DT_NOBEGIN;
	return Min(cutoff, horizon) - USECS_PER_SEC;
}

/*
 * Expiry of holds (always), folding of confirmed units and purge of old
 * messages (full: the first worker, every naptime).
 */
static void
housekeeping(bool full)
{
	TimestampTz next_floor = purge_floor;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz horizon;
	TimestampTz expiry_floor;
	instr_time	started;
	bool		full_purge = false;
	bool		purged = false;
	bool		full_expiry;
	double		expiry_ms;
	uint64		gen;

	begin_work("pacelc: housekeeping");
	gen = expiry_floor_begin(&full_expiry);
	/* before the snapshots of the expiry plan and the purge */
	horizon = writer_horizon(now);
	INSTR_TIME_SET_CURRENT(started);
	exec_sql("SELECT pacelc.expire_holds(1000)");
	expiry_ms = ms_since(started);
	if (full)
	{
		exec_sql("SELECT pacelc.fold_confirmed(1000)");
		if (done_retention_s > 0)
		{
			next_floor = purge_old_messages(now, horizon, &full_purge);
			purged = true;
			truncate_if_drained();
		}
	}
	INSTR_TIME_SET_CURRENT(started);
	plan_next_round();
	expiry_ms += ms_since(started); /* its expiry probe: from the floor too */
	expiry_floor = (horizon == DT_NOBEGIN) ? DT_NOBEGIN :
		Min(next_expiry_at, horizon - USECS_PER_SEC);
	end_work();
	/* committed: what it expired and deleted is gone */
	expiry_floor_end(gen, expiry_floor, full_expiry, expiry_ms);
	purge_floor = next_floor;
	if (full_purge)
	{
		last_full_purge = now;
		safety_net_ran(&full_purge_net, full_purge_took_ms);
	}
	if (purged)
	{
		PreparedSeen *swap = prepared_seen;

		prepared_seen = prepared_listed;
		nprepared_seen = nprepared_listed;
		prepared_listed = swap;
	}
}

typedef struct DueMessage
{
	int64		id;
	int32		attempts;		/* counting this one */
	Oid			handler;		/* resolved at the call; InvalidOid: it does
								 * not */
	char	   *handler_name;	/* NULL: the queue has no handler any more */
	Oid			owner;
	bool		interrupted;	/* the previous attempt never finished */
	TimestampTz old_run_at;
	Datum		payload;		/* detoasted jsonb, in the batch's context */
} DueMessage;

/*
 * Settings of the worker's own statements, and the database's values of
 * them, which handlers get back for their call (see handle_message):
 *
 *	search_path: the statements run as a superuser and resolve names in
 *	trusted schemas only, whatever postgresql.conf or ALTER DATABASE says;
 *	enable_seqscan: every statement is an index probe, but a queue that is
 *	young when a flash sale starts has statistics saying "empty", and a plan
 *	scanning the whole growing table per batch would make the worker fall
 *	further behind the busier it gets;
 *	jit: what enable_seqscan does to cost estimates would otherwise make
 *	PostgreSQL compile every tiny statement;
 *	plan_cache_mode: a custom plan for given times would have the planner
 *	look up the actual ends of the due index (get_actual_variable_range) at
 *	every execution, stepping over the entries a long transaction keeps;
 *	lock_timeout: the worker's statements wait for no lock but DDL's
 *	(DROP EXTENSION, ALTER EXTENSION UPDATE, ...); such a command locks the
 *	extension's tables one after the other, and with a pool each worker's
 *	deadlock check (10 ms, once per wait) may run before the cycle closes,
 *	leaving the command's own check to find it and fail.  A worker gives
 *	up its round instead (quietly) and tries again a second later;
 *	default_transaction_isolation: the worker's transactions (a batch, its
 *	handlers included) are READ COMMITTED whatever the database's default.
 *	Under REPEATABLE READ or SERIALIZABLE the workers' own statements on
 *	pacelc.messages (FOR UPDATE SKIP LOCKED of a row another worker has
 *	just marked done, the "done" of a batch, the counting of unfinished
 *	attempts) fail with serialization errors, and a batch that fails to
 *	commit counts an attempt for every handler it ran: messages whose
 *	handlers succeeded went dead.  (The value handlers get back does not
 *	change their transaction's level, which is set when it starts.)
 */
typedef struct WorkerSetting
{
	const char *name;
	const char *worker_value;
	char	   *handler_value;
} WorkerSetting;

static WorkerSetting worker_settings[] = {
	{"search_path", "pg_catalog, pacelc, pg_temp", NULL},
	{"enable_seqscan", "off", NULL},
	{"jit", "off", NULL},
	{"lock_timeout", "200ms", NULL},
	{"plan_cache_mode", "force_generic_plan", NULL},
	{"default_transaction_isolation", "read committed", NULL},
#if PG_VERSION_NUM >= 170000
	/* the worker's own transactions (a handler gets the database's value) */
	{"transaction_timeout", "0", NULL},
#endif
};

/* Remembers the database's values, then switches to the worker's. */
static void
worker_settings_apply(void)
{
	int			i;

	for (i = 0; i < lengthof(worker_settings); i++)
	{
		worker_settings[i].handler_value =
			MemoryContextStrdup(TopMemoryContext,
								GetConfigOption(worker_settings[i].name, false, false));
		SetConfigOption(worker_settings[i].name, worker_settings[i].worker_value,
						PGC_SUSET, PGC_S_OVERRIDE);
	}
}

/* For a handler's call, inside its GUC nest level: the database's values. */
static void
worker_settings_for_handler(void)
{
	int			i;

	for (i = 0; i < lengthof(worker_settings); i++)
		(void) set_config_option(worker_settings[i].name,
								 worker_settings[i].handler_value,
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
}

/*
 * Plans the worker runs every batch: parsed and planned once per worker
 * (the plan cache replans them after DDL).  Every name is qualified: they
 * run as a superuser.
 */
static SPIPlanPtr pick_plan = NULL;
static SPIPlanPtr next_due_plan = NULL;
static SPIPlanPtr lease_plan = NULL;
static SPIPlanPtr lease_mark_plan = NULL;
static SPIPlanPtr lock_plan = NULL;
static SPIPlanPtr done_plan = NULL;
static SPIPlanPtr release_plan = NULL;
static SPIPlanPtr fail_plan = NULL;
static SPIPlanPtr dead_plan = NULL;
static SPIPlanPtr plan_plan = NULL;
static SPIPlanPtr expiry_plan = NULL;
static SPIPlanPtr queue_plan = NULL;
static SPIPlanPtr recover_plan = NULL;
static SPIPlanPtr recover_busy_plan = NULL;

/* ---------------------------------------------------------------------
 * One handler call
 * --------------------------------------------------------------------- */

/* Set by the give-up timeout; read by the exit callback. */
static volatile sig_atomic_t gave_up = false;
static TimeoutId give_up_timeout;
static char running_queue[NAMEDATALEN];
static int64 running_message = 0;

/*
 * The handler ignored every cancellation for the grace period: make the
 * worker exit (FATAL, which no handler can catch).  Its transaction aborts,
 * so nothing of the batch is marked done; the attempt was counted when the
 * batch was leased.
 */
static void
give_up_handler(void)
{
	gave_up = true;
	kill(MyProcPid, SIGTERM);
}

#if PG_VERSION_NUM >= 170000 && !defined(USE_ASSERT_CHECKING)
/*
 * transaction_timeout (PostgreSQL 17) ends the session when it expires
 * (FATAL, which no handler can catch), and any handler may SET it: one
 * application's handler could end the worker at will, again and again,
 * and the launcher's backoff after each exit would stall every queue of
 * the database and the expiry of holds.  In a worker its expiry cancels
 * the running statement instead, as statement_timeout does: the handler's
 * attempt fails like any other.  (The timeout module has no way to replace
 * a handler but to register it again, which assertion-enabled builds
 * refuse; there the setting keeps PostgreSQL's behaviour.)
 */
static void
transaction_timeout_handler(void)
{
	if (TransactionTimeout > 0)
	{
		QueryCancelPending = true;
		InterruptPending = true;
	}
	SetLatch(MyLatch);
}
#endif

static void
log_give_up(int code, Datum arg)
{
	if (gave_up)
		ereport(LOG,
				(errmsg("pacelc worker gave up on the handler of queue \"%s\" (message " INT64_FORMAT ")",
						running_queue, running_message),
				 errdetail("It did not return within \"pacelc.handler_timeout\" (%d ms) and ignored repeated cancellations; the worker exits and is restarted, and the attempt counts as failed.",
						   handler_timeout_ms)));
}

/* Cancelled again this often past the time limit. */
static int
cancel_repeat_ms(void)
{
	return Max(50, Min(handler_timeout_ms / 10, 1000));
}

/* Then given up on after this long past the time limit. */
static int
give_up_grace_ms(void)
{
	return Max(1000, Min(handler_timeout_ms, 10000));
}

static void
stop_handler_timeouts(void)
{
	DisableTimeoutParams t[2];

	t[0].id = STATEMENT_TIMEOUT;
	t[0].keep_indicator = false;
	t[1].id = give_up_timeout;
	t[1].keep_indicator = false;
	disable_timeouts(t, 2);
}

/*
 * Resolves the queue's handler from its signature (the queues.handler
 * column as text: a regprocedure, or from 0.3 on the signature itself), as
 * to_regprocedure() does, at every call: a handler dropped or replaced
 * since is noticed.  In the handler's subtransaction, so that even an
 * error of the lookup only fails this attempt.
 */
static Oid
resolve_handler(const char *signature)
{
	LOCAL_FCINFO(fcinfo, 1);
	Datum		result;

	/* a regprocedure shows a dropped function as its bare OID */
	if (strchr(signature, '(') == NULL)
		return InvalidOid;
	InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = CStringGetTextDatum(signature);
	fcinfo->args[0].isnull = false;
	result = to_regprocedure(fcinfo);
	return fcinfo->isnull ? InvalidOid : DatumGetObjectId(result);
}

/*
 * The handler resolved for this batch: its messages all name the same one
 * (read by one statement), and parsing the signature is a good part of a
 * small handler's cost.  Forgotten at the start of every batch.
 */
static char *batch_handler_name = NULL;
static Oid	batch_handler = InvalidOid;

/* The checks the executor would make, and those a stale owner needs. */
static void
check_handler(DueMessage *m, const char *queue)
{
	if (batch_handler_name != NULL && OidIsValid(batch_handler) &&
		strcmp(batch_handler_name, m->handler_name) == 0)
		m->handler = batch_handler;
	else
	{
		m->handler = resolve_handler(m->handler_name);
		batch_handler_name = m->handler_name;	/* lives for the batch */
		batch_handler = m->handler;
	}
	if (!OidIsValid(m->handler))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("handler %s of queue \"%s\" does not exist", m->handler_name, queue),
				 errhint("Install a handler with pacelc.alter_queue().")));
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(m->owner)))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("owner of queue \"%s\" no longer exists", queue),
				 errdetail("Role %u was dropped; no handler runs under a dropped role.", m->owner),
				 errhint("Install the handler again, as its new owner, with pacelc.alter_queue().")));
	if (superuser_arg(m->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("a queue handler must not run as a superuser"),
				 errdetail("The owner of queue \"%s\" has become a superuser since the handler was installed.", queue),
				 errhint("Install the handler again as an ordinary role with pacelc.alter_queue().")));
	if (pacelc_proc_aclcheck(m->handler, m->owner, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function %s", get_func_name(m->handler)),
				 errdetail("The owner of queue \"%s\" may not execute its handler.", queue)));
}

/* Calls the handler through the function manager: no SQL text per message. */
static void
call_handler(DueMessage *m)
{
	FmgrInfo	flinfo;

	LOCAL_FCINFO(fcinfo, 1);

	fmgr_info(m->handler, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = m->payload;
	fcinfo->args[0].isnull = false;
	(void) FunctionCallInvoke(fcinfo);
}

/*
 * What a pooler's DISCARD ALL would reset and can outlive a handler's
 * subtransaction: session advisory locks (pg_advisory_unlock_all),
 * prepared statements (DEALLOCATE ALL) and sequence caches (DISCARD
 * SEQUENCES).  Settings die with the handler's GUC nest level; temporary
 * tables, LISTEN and WITH HOLD cursors are refused to it as a
 * security-restricted operation.
 */
static void
reset_session_state(void)
{
	LockReleaseSession(USER_LOCKMETHOD);
	DropAllPreparedStatements();
	ResetSequenceCaches();
}

/*
 * Dead-letters a message whose failure could not be recorded, saying why.
 * Runs in the batch's transaction: if even this fails, the batch aborts
 * (and the attempt stays counted).
 */
static void
dead_letter(DueMessage *m, const char *error, const char *sqlstate,
			int counted, const char *why)
{
	Oid			argtypes[4] = {INT8OID, INT4OID, TEXTOID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};

	values[0] = Int64GetDatum(m->id);
	values[1] = Int32GetDatum(counted);
	values[2] = CStringGetTextDatum(psprintf("%s (recording this failure failed, so the message was dead-lettered: %s)",
											 error, why ? why : "unknown error"));
	values[3] = sqlstate ? CStringGetTextDatum(sqlstate) : (Datum) 0;
	if (sqlstate == NULL)
		nulls[3] = 'n';
	pacelc_keep_plan(&dead_plan,
					 "UPDATE pacelc.messages SET state = 'dead', attempts = $2, leased_until = NULL,"
					 "       last_error = $3, last_sqlstate = $4,"
					 "       last_error_at = pg_catalog.clock_timestamp()"
					 " WHERE id = $1", 4, argtypes);
	if (SPI_execute_plan(dead_plan, values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "pacelc worker: could not dead-letter message " INT64_FORMAT, m->id);
	ereport(WARNING,
			(errmsg("pacelc worker dead-lettered message " INT64_FORMAT ": recording its failure failed", m->id),
			 errdetail("%s", why ? why : "unknown error")));
}

/* record_failure()'s subtransaction: pacelc._fail() with its arguments. */
typedef struct FailureRecord
{
	DueMessage *m;
	Datum		values[4];
	char		nulls[4];
} FailureRecord;

static void
record_failure_sql(void *arg)
{
	FailureRecord *r = (FailureRecord *) arg;
	Oid			argtypes[4] = {INT8OID, TEXTOID, TEXTOID, INT4OID};

	pacelc_keep_plan(&fail_plan,
					 "SELECT pacelc._fail(m, $2, $3, NULL, $4)"
					 "  FROM pacelc.messages m WHERE m.id = $1", 4, argtypes);
	if (SPI_execute_plan(fail_plan, r->values, r->nulls, false, 0) < 0)
		elog(ERROR, "could not record the failure of message " INT64_FORMAT, r->m->id);
}

/*
 * Records a failed attempt with pacelc._fail() in a subtransaction of its
 * own: if that fails (whatever the reason), the message is dead-lettered
 * with the reason, and the batch goes on.
 */
static void
record_failure(DueMessage *m, const char *error, const char *sqlstate, int counted)
{
	FailureRecord r = {m, {0}, {' ', ' ', ' ', ' '}};
	ErrorData  *edata;

	r.values[0] = Int64GetDatum(m->id);
	r.values[1] = CStringGetTextDatum(error);
	r.values[2] = sqlstate ? CStringGetTextDatum(sqlstate) : (Datum) 0;
	if (sqlstate == NULL)
		r.nulls[2] = 'n';
	r.values[3] = Int32GetDatum(counted);

	edata = pacelc_run_in_subxact(record_failure_sql, &r);
	if (edata == NULL)
		return;
	dead_letter(m, error, sqlstate, counted, edata->message);
	FreeErrorData(edata);
}

/* One handler call, as pacelc_run_in_subxact() runs it. */
typedef struct HandlerCall
{
	DueMessage *m;
	const char *queue;
	Oid			save_userid;
	int			save_sec;
	TimestampTz start;
	TimestampTz limit;
} HandlerCall;

/*
 * In the handler's subtransaction: the checks, then the call as the
 * queue's owner under the handler timeout.  The settings the handler
 * changes (even with is_local false) die with its GUC nest level; on an
 * error the subtransaction's abort restores them and the user id.
 */
static void
run_handler(void *arg)
{
	HandlerCall *h = (HandlerCall *) arg;
	int			save_nestlevel = NewGUCNestLevel();

	check_handler(h->m, h->queue);
	worker_settings_for_handler();
	SetUserIdAndSecContext(h->m->owner, h->save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	pacelc_set_handler_role(h->m->owner);
	/* cancelled at the limit and again and again; then given up on */
	enable_timeout_every(STATEMENT_TIMEOUT, h->limit, cancel_repeat_ms());
	enable_timeout_at(give_up_timeout,
					  TimestampTzPlusMilliseconds(h->limit, give_up_grace_ms()));
	call_handler(h->m);
	stop_handler_timeouts();
	if (GetCurrentTimestamp() >= h->limit)
	{
		long		secs;
		int			usecs;

		QueryCancelPending = false;
		TimestampDifference(h->start, GetCurrentTimestamp(), &secs, &usecs);
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("handler of queue \"%s\" ran past \"pacelc.handler_timeout\" (%d ms)",
						h->queue, handler_timeout_ms),
				 errdetail("It returned after %ld ms; its effects are rolled back and the attempt counts as failed.",
						   secs * 1000 + usecs / 1000)));
	}
	pacelc_set_handler_role(InvalidOid);
	AtEOXact_GUC(false, save_nestlevel);
	SetUserIdAndSecContext(h->save_userid, h->save_sec);
}

/*
 * Runs one handler in a subtransaction, as the queue's owner, under the
 * handler timeout.  Returns true when it succeeded; the caller marks the
 * message done in the batch's transaction, so the handler's effects and the
 * "done" still commit together.  A failure (a handler that returns after
 * its time limit included) is rolled back and recorded; it never stops the
 * batch.
 */
static bool
handle_message(DueMessage *m, const char *queue)
{
	HandlerCall h;
	ErrorData  *edata;

	h.m = m;
	h.queue = queue;
	h.start = GetCurrentTimestamp();
	h.limit = TimestampTzPlusMilliseconds(h.start, handler_timeout_ms);
	strlcpy(running_queue, queue, NAMEDATALEN);
	running_message = m->id;
	GetUserIdAndSecContext(&h.save_userid, &h.save_sec);
	edata = pacelc_run_in_subxact(run_handler, &h);
	if (edata != NULL)
	{
		stop_handler_timeouts();
		if (GetCurrentTimestamp() >= h.limit)
			QueryCancelPending = false; /* a repeated cancel still in flight */
		pacelc_set_handler_role(InvalidOid);
	}
	reset_session_state();
	if (edata != NULL)
	{
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED &&
			GetCurrentTimestamp() >= h.limit)
			record_failure(m, psprintf("handler of queue \"%s\" ran past \"pacelc.handler_timeout\" (%d ms): %s",
									   queue, handler_timeout_ms,
									   edata->message ? edata->message : "cancelled"),
						   unpack_sql_state(edata->sqlerrcode), m->attempts);
		else
			record_failure(m, edata->message ? edata->message : "unknown error",
						   unpack_sql_state(edata->sqlerrcode), m->attempts);
		FreeErrorData(edata);
	}
	running_message = 0;
	return edata == NULL;
}

/* ---------------------------------------------------------------------
 * Batches and rounds
 * --------------------------------------------------------------------- */

/*
 * Per queue, how long a message takes (it sizes the next lease), and where
 * this worker's scans of the queue begin.
 *
 * Scan floors.  A message's entry in the due index (queue, run_at, id)
 * stays behind when the message is leased or done, and while any snapshot
 * is older than that (a long transaction anywhere in the cluster) it can be
 * neither removed nor marked dead: a scan from the start of the queue
 * would step over every message handled since that snapshot was taken, and
 * a queue under load slows down the longer the transaction stays open.
 * So each worker remembers per queue a floor below which no due message
 * can be: the scan starts there.  A floor is raised only to times that are
 *	- at most when this worker's scan began (T0): anything due before and
 *	  visible was taken by the scan, unless the scan stopped at its limit
 *	  (then at most the run_at of its last message);
 *	- at most the earliest time an open transaction started enqueueing
 *	  (pacelc_worker_note_enqueue(), read before the scan's snapshot): an
 *	  enqueue's run_at is never before it, so its messages, when they
 *	  commit, lie above the floor.
 * Everything else that makes a message due at an earlier time (a worker's
 * messages put back, a failed attempt, nack(), retry(), a new handler,
 * an external consumer's lease) lowers every worker's floors at commit
 * (lower_floors(): to where the messages a batch put back or failed are due,
 * to the start for what SQL did and for COMMIT PREPARED, which may commit
 * an enqueue that stopped announcing itself at PREPARE); each worker
 * scans from the start at once when the clock stepped back, and every
 * FULL_SCAN_MS in any case.  A floor never loses a message: at worst a
 * message waits for that full scan.  Beside a transaction open for hours
 * that scan steps over every entry left since it began, so it comes at
 * most once per SAFETY_NET_SHARE times the duration of the statements
 * that made one (see SafetyNet): a safety net that costs the worker a
 * bounded share of its time however old the transaction.
 */
typedef struct QueuePace
{
	char		name[NAMEDATALEN];	/* hash key */
	double		ms_per_message;
	TimestampTz floor;			/* no due message before it; DT_NOBEGIN */
} QueuePace;

static HTAB *queue_pace = NULL;

static TimestampTz last_full_scan = 0;
static SafetyNet full_scan_net = {FULL_SCAN_MS, FULL_SCAN_MS, 0};
static bool full_scan_timed = false;	/* one began, its scan not run yet */
static instr_time full_scan_began;

/*
 * The scan of a statement after a full scan's start has run: it is timed
 * (see SafetyNet).
 */
static void
full_scan_done(void)
{
	if (!full_scan_timed)
		return;
	safety_net_ran(&full_scan_net, ms_since(full_scan_began));
	full_scan_timed = false;
}

/*
 * Applies lower_floors() and, every full_scan_net.every_ms or when the clock
 * stepped back, starts from the start.
 */
static void
check_floors(void)
{
	TimestampTz from;
	TimestampTz now = GetCurrentTimestamp();
	HASH_SEQ_STATUS seq;
	QueuePace  *p;

	SpinLockAcquire(&wshared->mutex);
	from = my_slot->rescan_from;
	my_slot->rescan_from = DT_NOEND;
	SpinLockRelease(&wshared->mutex);
	if (from != DT_NOEND)
		forget_reuse();			/* a new handler, nack, retry: pick anew */
	/* (at once after the clock stepped back: floors lie ahead of it) */
	if (now < last_full_scan ||
		TimestampDifferenceExceeds(last_full_scan, now, full_scan_net.every_ms))
	{
		from = DT_NOBEGIN;
		last_full_scan = now;
		INSTR_TIME_SET_CURRENT(full_scan_began);
		full_scan_timed = true;
	}
	hash_seq_init(&seq, queue_pace);
	while ((p = hash_seq_search(&seq)) != NULL)
	{
		/* no floor passes the time of its scan, unless the clock went back */
		if (p->floor > now)
			p->floor = DT_NOBEGIN;
		else if (from < p->floor)
			p->floor = from;
	}
}

/* The earliest time an open transaction started enqueueing; DT_NOEND: none. */
static TimestampTz
pending_enqueues_since(void)
{
	TimestampTz min = DT_NOEND;
	int			i;

	for (i = 0; i < wshared->npending; i++)
	{
		PendingSlot *slot = &wshared->pending[i];
		TimestampTz since;

		SpinLockAcquire(&slot->mutex);
		since = slot->since;
		SpinLockRelease(&slot->mutex);
		if (since != 0 && since < min)
			min = since;
	}
	return min;
}

/* The floors of the queues this worker knows, as arrays for a statement. */
static void
floor_arrays(Datum *names_out, Datum *floors_out)
{
	HASH_SEQ_STATUS seq;
	QueuePace  *p;
	long		n = hash_get_num_entries(queue_pace);
	Datum	   *names = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *floors = palloc(sizeof(Datum) * Max(n, 1));
	int			i = 0;

	hash_seq_init(&seq, queue_pace);
	while ((p = hash_seq_search(&seq)) != NULL)
	{
		names[i] = CStringGetTextDatum(p->name);
		floors[i++] = TimestampTzGetDatum(p->floor);
	}
	*names_out = PointerGetDatum(construct_array(names, i, TEXTOID, -1, false, TYPALIGN_INT));
	*floors_out = PointerGetDatum(construct_array(floors, i, TIMESTAMPTZOID, sizeof(TimestampTz),
												  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}


/* Memory that lives for a round (reset after each). */
static MemoryContext round_cxt = NULL;

/* This round: queues where nothing could be leased (locked by others). */
static List *skipped_queues = NIL;

/* Round-robin: the queue this worker served last. */
static char last_queue[NAMEDATALEN] = "";

static TimestampTz last_expiry_check = 0;
static bool check_extension = true;
static bool planned = false;
static bool inflight_scan = true;	/* count other workers' unfinished attempts */
static bool inflight_open = false;
static uint32 orphans_seen = 0;
static bool linger = false;		/* the last batch emptied its queue under load */

/*
 * The earliest run_at of the batch in this worker's file while it runs
 * (DT_NOEND: none).  A batch that does not commit leaves its messages as
 * they were, below the floors other workers raised while skipping them as
 * locked; those its counting does not touch (never started) are due there.
 */
static TimestampTz open_batch_from = DT_NOEND;

static void
abandon_open_batch(void)
{
	if (open_batch_from == DT_NOEND || wshared == NULL)
		return;
	lower_floors(MyDatabaseId, open_batch_from);
	open_batch_from = DT_NOEND;
	set_my_batch(0);
}

/* This worker's pace of a queue, made on first sight (floor: the start). */
static QueuePace *
queue_pace_entry(const char *queue)
{
	bool		found;
	QueuePace  *pace = hash_search(queue_pace, queue, HASH_ENTER, &found);

	if (!found)
	{
		pace->ms_per_message = 20.0;
		pace->floor = DT_NOBEGIN;
	}
	return pace;
}

/*
 * Reads both times, inside the caller's transaction.  Per queue, so each
 * probe is one step into the (queue, run_at, id) index; the expiry probe is
 * one step into the partial expiry index.
 *
 * Each probe also raises this worker's floor of its queue, by the rule of
 * the lease scan (see QueuePace): to at most the time before the
 * snapshot, the open enqueues' start, and the earliest due message it saw
 * (locked ones included: this scan takes no locks).  A worker that serves
 * no queue plans a round after every wake-up; without its own floor it
 * would step, each time, over every message handled since a long
 * transaction began.
 */
static void
plan_next_round(void)
{
	bool		isnull;
	Datum		d;
	Oid			argtypes[3] = {TEXTARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZOID};
	Oid			expiryargtypes[2] = {TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		values[3];
	Datum		expiryvalues[2];
	TimestampTz scan_start;
	TimestampTz pending_since;
	uint64		i;

	check_floors();
	floor_arrays(&values[0], &values[1]);
	/* in this order: T0, then the open enqueues, then the scan's snapshot */
	scan_start = GetCurrentTimestamp();
	pending_since = pending_enqueues_since();
	values[2] = TimestampTzGetDatum(TimestampTzPlusMilliseconds(scan_start,
																worker_naptime_s * 1000L));

	/*
	 * Only up to the next naptime (the worker sleeps no longer anyway), and
	 * as a parameter, so that the index scans stop there: past now lie the
	 * entries the worker's own leases left, one per message handled in the
	 * last lease period, dead but kept while a long transaction is open.
	 */
	pacelc_keep_plan(&plan_plan,
					 "SELECT q.name, (SELECT m.run_at FROM pacelc.messages m"
					 "            WHERE m.queue = q.name AND m.state = 'ready'"
					 "              AND m.run_at >= coalesce((SELECT f.floor FROM ROWS FROM"
					 "                    (pg_catalog.unnest($1::pg_catalog.text[]),"
					 "                     pg_catalog.unnest($2::pg_catalog.timestamptz[])) AS f(name, floor)"
					 "                   WHERE f.name = q.name LIMIT 1), '-infinity')"
					 "              AND m.run_at <= $3"
					 "            ORDER BY m.run_at LIMIT 1)"
					 "  FROM pacelc.queues q WHERE q.handler IS NOT NULL", 3, argtypes);
	/* not read-only: a fresh snapshot, which sees this round's own work */
	if (SPI_execute_plan(plan_plan, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "pacelc worker: could not plan its next round");
	next_message_at = DT_NOEND;
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *name = TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull));
		TimestampTz new_floor = Min(scan_start, pending_since);
		QueuePace  *pace;

		d = SPI_getbinval(tup, desc, 2, &isnull);
		if (!isnull)
		{
			next_message_at = Min(next_message_at, DatumGetTimestampTz(d));
			new_floor = Min(new_floor, DatumGetTimestampTz(d));
		}
		if (strlen(name) >= NAMEDATALEN)
			continue;			/* not a valid queue name: no floor */
		pace = queue_pace_entry(name);
		if (new_floor > pace->floor)
			pace->floor = new_floor;
	}
	SPI_freetuptable(SPI_tuptable);
	full_scan_done();

	/*
	 * From the expiry floor (see pacelc_worker_expiry_floor()) to the next
	 * naptime, like the probes above: past it lie the entries of the holds
	 * ended before their ttl (a flash sale's confirmed ones), kept while a
	 * long transaction is open.
	 */
	expiryvalues[0] = TimestampTzGetDatum(pacelc_worker_expiry_floor(MyDatabaseId));
	expiryvalues[1] = values[2];	/* the next naptime */
	pacelc_keep_plan(&expiry_plan,
					 "SELECT min(r.expires_at) FROM pacelc.reservation_data r"
					 " WHERE r.state = 'held' AND r.expires_at IS NOT NULL"
					 "   AND r.expires_at >= $1 AND r.expires_at <= $2", 2, expiryargtypes);
	if (SPI_execute_plan(expiry_plan, expiryvalues, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "pacelc worker: could not plan its next round");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	next_expiry_at = isnull ? DT_NOEND : DatumGetTimestampTz(d);
	planned = true;
}

/*
 * The queue the last pick found as the only candidate, and when.  Under a
 * steady stream of enqueues a batch holds a dozen messages, and the pick
 * statement cost as much as a third of them, to give the same answer
 * batch after batch.  For PICK_REUSE_MS the worker takes that queue again
 * without it, unless it skipped the queue in this round (all its messages
 * locked by others).  Fairness is untouched where it matters: with two
 * candidates or more every batch picks.  What makes another queue a
 * candidate ends the reuse: an enqueue into a queue with room for this
 * worker, at its commit, or for a delayed message when it becomes due
 * (wake_database()); a message of another queue not due at the pick when
 * it becomes due (reuse_end()); a rescan (a new handler, nack, retry, a
 * batch's failed or put-back messages: check_floors()); a reload.  Before,
 * such a queue waited up to PICK_REUSE_MS with a pool of one (p99 of a
 * trickle queue beside a hot one 5.9 ms before the reuse, 102 ms with it),
 * which is left only for messages written by hand.
 * A queue taken again that yields nothing ends it too, and is not left
 * out for the round as a queue the pick chose is (handle_batch()): it was
 * probably just drained, not locked by others, and left out it would wait
 * for every other queue's backlog to drain.
 */
static char reuse_queue[NAMEDATALEN] = "";
static int	reuse_limit = 1;
static TimestampTz reuse_from = 0;
static TimestampTz reuse_until = 0;

static void
set_reuse(const char *queue)
{
	strlcpy(reuse_queue, queue, NAMEDATALEN);
	SpinLockAcquire(&wshared->mutex);
	strlcpy(my_slot->reuse, queue, NAMEDATALEN);
	SpinLockRelease(&wshared->mutex);
}

static void
forget_reuse(void)
{
	if (reuse_queue[0] == '\0')
		return;
	set_reuse("");
}

static bool
queue_skipped(const char *queue)
{
	ListCell   *lc;

	foreach(lc, skipped_queues)
	{
		if (strcmp((char *) lfirst(lc), queue) == 0)
			return true;
	}
	return false;
}

/* The queue of the last pick, if it may and can be taken again (above). */
static bool
reuse_pick(char *queue)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		asked;

	/*
	 * Cleared before the pick statement's snapshot: a commit after it asks
	 * again.  (One for the queue taken again came while this worker picked
	 * it: it asks for nothing.)
	 */
	SpinLockAcquire(&wshared->mutex);
	asked = false;
	if (now >= my_slot->repick_at)
	{
		asked = my_slot->repick_queue[0] == '\0' ||
			strcmp(my_slot->repick_queue, reuse_queue) != 0;
		my_slot->repick_at = DT_NOEND;
	}
	SpinLockRelease(&wshared->mutex);
	if (reuse_queue[0] == '\0')
		return false;
	if (!asked &&
		now >= reuse_from &&	/* else the clock stepped back */
		now < reuse_until &&
		!queue_skipped(reuse_queue) &&
		claim_queue(reuse_queue, reuse_limit))
	{
		strlcpy(queue, reuse_queue, NAMEDATALEN);
		return true;
	}
	forget_reuse();
	return false;
}

/*
 * How long the only candidate queue of a pick made at "from" may be taken
 * again (reuse_pick()): PICK_REUSE_MS, or until the first message of
 * another handler queue that was not due then becomes due, if sooner.
 * Those committed later announce themselves (wake_database()).
 */
static TimestampTz
reuse_end(const char *queue, TimestampTz from)
{
	Oid			argtypes[3] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		values[3];
	TimestampTz end = TimestampTzPlusMilliseconds(from, PICK_REUSE_MS);
	bool		isnull;
	Datum		d;

	values[0] = CStringGetTextDatum(queue);
	values[1] = TimestampTzGetDatum(from);
	values[2] = TimestampTzGetDatum(end);
	/* a probe per queue, as the plan's; only up to the end (see there) */
	pacelc_keep_plan(&next_due_plan,
					 "SELECT pg_catalog.min((SELECT m.run_at FROM pacelc.messages m"
					 "            WHERE m.queue = q.name AND m.state = 'ready'"
					 "              AND m.run_at > $2 AND m.run_at <= $3"
					 "            ORDER BY m.run_at LIMIT 1))"
					 "  FROM pacelc.queues q WHERE q.handler IS NOT NULL AND q.name <> $1",
					 3, argtypes);
	if (SPI_execute_plan(next_due_plan, values, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "pacelc worker: could not pick a queue");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
		end = Min(end, DatumGetTimestampTz(d));
	SPI_freetuptable(SPI_tuptable);
	return end;
}

/*
 * Picks the next queue for this worker, round-robin after the one it
 * served last, among the handler queues with due messages that have fewer
 * workers than their concurrency limit, and claims it.  False: none.
 * *reused: taken again without the pick statement (reuse_pick()).
 */
static bool
pick_queue(char *queue, bool *reused)
{
	Oid			argtypes[7] = {TEXTARRAYOID, INT4ARRAYOID, INT4OID, TEXTOID,
	TEXTARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZOID};
	int			tries;
	List	   *lost = NIL;

	*reused = reuse_pick(queue);
	if (*reused)
		return true;
	for (tries = 0; tries < 8; tries++)
	{
		Datum	   *names;
		Datum	   *counts;
		int			n = 0,
					i;
		int			size = wshared->nslots + list_length(skipped_queues) + list_length(lost) + 1;
		Datum		values[7];
		ListCell   *lc;
		int			limit;
		bool		isnull;
		char		(*taken)[NAMEDATALEN];
		int			ntaken = 0;

		names = palloc(sizeof(Datum) * size);
		counts = palloc(sizeof(Datum) * size);
		/* copy the other workers' queues: no palloc under the spinlock */
		taken = palloc(sizeof(*taken) * wshared->nslots);
		SpinLockAcquire(&wshared->mutex);
		for (i = 0; i < wshared->nslots; i++)
		{
			PoolSlot   *s = &wshared->slots[i];

			if (s != my_slot && s->dbid == MyDatabaseId && s->queue[0] != '\0')
				memcpy(taken[ntaken++], s->queue, NAMEDATALEN);
		}
		SpinLockRelease(&wshared->mutex);
		for (i = 0; i < ntaken; i++)
		{
			int			j;
			int32		nworkers = 1;

			for (j = 0; j < i; j++)
				if (strcmp(taken[j], taken[i]) == 0)
					break;
			if (j < i)
				continue;		/* counted with its first occurrence */
			for (j = i + 1; j < ntaken; j++)
				if (strcmp(taken[j], taken[i]) == 0)
					nworkers++;
			counts[n] = Int32GetDatum(nworkers);
			names[n++] = CStringGetTextDatum(taken[i]);
		}
		foreach(lc, skipped_queues)
		{
			names[n] = CStringGetTextDatum((char *) lfirst(lc));
			counts[n++] = Int32GetDatum(1000000);
		}
		foreach(lc, lost)
		{
			names[n] = CStringGetTextDatum((char *) lfirst(lc));
			counts[n++] = Int32GetDatum(1000000);
		}
		values[0] = PointerGetDatum(construct_array(names, n, TEXTOID, -1, false, TYPALIGN_INT));
		values[1] = PointerGetDatum(construct_array(counts, n, INT4OID, sizeof(int32), true, TYPALIGN_INT));
		values[2] = Int32GetDatum(queue_concurrency);
		values[3] = CStringGetTextDatum(last_queue);
		floor_arrays(&values[4], &values[5]);
		values[6] = TimestampTzGetDatum(GetCurrentTimestamp());
		pacelc_keep_plan(&pick_plan,
						 "WITH busy AS (SELECT b.name, b.n FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]),"
						 "                pg_catalog.unnest($2::pg_catalog.int4[])) AS b(name, n)),"
						 "     q AS (SELECT q.name, coalesce((pg_catalog.to_jsonb(q)"
						 "                  OPERATOR(pg_catalog.->>) 'concurrency')::pg_catalog.int4, $3) AS lim"
						 "             FROM pacelc.queues q WHERE q.handler IS NOT NULL)"
						 "SELECT q.name, q.lim, pg_catalog.count(*) OVER () FROM q"
						 " WHERE coalesce((SELECT busy.n FROM busy WHERE busy.name = q.name LIMIT 1), 0) < q.lim"
						 "   AND EXISTS (SELECT FROM pacelc.messages m WHERE m.queue = q.name"
						 "                 AND m.state = 'ready' AND m.run_at <= $7"
						 "                 AND m.run_at >= coalesce((SELECT f.floor FROM ROWS FROM"
						 "                       (pg_catalog.unnest($5::pg_catalog.text[]),"
						 "                        pg_catalog.unnest($6::pg_catalog.timestamptz[])) AS f(name, floor)"
						 "                      WHERE f.name = q.name LIMIT 1), '-infinity')"
						 "               OFFSET 0)"	/* a probe per queue, never a semi-join */
						 " ORDER BY q.name <= $4, q.name LIMIT 1", 7, argtypes);
		if (SPI_execute_plan(pick_plan, values, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "pacelc worker: could not pick a queue");
		if (SPI_processed == 0)
			return false;
		strlcpy(queue, TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0],
														 SPI_tuptable->tupdesc, 1, &isnull)),
				NAMEDATALEN);
		limit = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
											SPI_tuptable->tupdesc, 2, &isnull));
		if (isnull || limit < 1)
			limit = 1;
		if (claim_queue(queue, limit))
		{
			/* the only candidate: the next batches may take it again */
			if (DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											SPI_tuptable->tupdesc, 3, &isnull)) == 1)
			{
				SPI_freetuptable(SPI_tuptable);
				set_reuse(queue);
				reuse_limit = limit;
				reuse_from = DatumGetTimestampTz(values[6]);	/* the pick's now */
				reuse_until = reuse_end(queue, reuse_from);
			}
			else
				forget_reuse();
			return true;
		}
		/* another worker took its last place meanwhile */
		lost = lappend(lost, pstrdup(queue));
	}
	return false;
}

/* An int8[] of ids, a statement's parameter. */
static Datum
id_array(Datum *ids, int n)
{
	return PointerGetDatum(construct_array(ids, n, INT8OID, sizeof(int64),
										   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* A leased message's id and its place in the lease's order. */
typedef struct LeaseOrder
{
	int64		id;
	int			pos;
} LeaseOrder;

static int
lease_order_cmp(const void *a, const void *b)
{
	int64		x = ((const LeaseOrder *) a)->id;
	int64		y = ((const LeaseOrder *) b)->id;

	return (x > y) - (x < y);
}

/* The lease's ids sorted, for lease_order_find(). */
static LeaseOrder *
lease_order_make(Datum *ids, int n)
{
	LeaseOrder *order = palloc(sizeof(LeaseOrder) * n);
	int			i;

	for (i = 0; i < n; i++)
	{
		order[i].id = DatumGetInt64(ids[i]);
		order[i].pos = i;
	}
	qsort(order, n, sizeof(LeaseOrder), lease_order_cmp);
	return order;
}

/* Where message id came in the lease (the lock statement returns no others). */
static int
lease_order_find(LeaseOrder *order, int n, int64 id)
{
	LeaseOrder	key;
	LeaseOrder *found;

	key.id = id;
	found = bsearch(&key, order, n, sizeof(LeaseOrder), lease_order_cmp);
	if (found == NULL)
		elog(ERROR, "pacelc worker: message " INT64_FORMAT " was not leased", id);
	return found->pos;
}

/* Puts leased messages back as they were: their attempt never started. */
static void
release_messages(DueMessage *msgs, int from, int to)
{
	Oid			argtypes[3] = {INT8ARRAYOID, TIMESTAMPTZARRAYOID, BOOLARRAYOID};
	Datum		values[3];
	Datum	   *ids,
			   *runs,
			   *intr;
	int			n = to - from,
				i;

	if (n <= 0)
		return;
	ids = palloc(sizeof(Datum) * n);
	runs = palloc(sizeof(Datum) * n);
	intr = palloc(sizeof(Datum) * n);
	for (i = 0; i < n; i++)
	{
		ids[i] = Int64GetDatum(msgs[from + i].id);
		runs[i] = TimestampTzGetDatum(msgs[from + i].old_run_at);
		intr[i] = BoolGetDatum(msgs[from + i].interrupted);
	}
	values[0] = id_array(ids, n);
	values[1] = PointerGetDatum(construct_array(runs, n, TIMESTAMPTZOID, sizeof(TimestampTz),
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[2] = PointerGetDatum(construct_array(intr, n, BOOLOID, 1, true, TYPALIGN_CHAR));
	pacelc_keep_plan(&release_plan,
					 "UPDATE pacelc.messages m SET attempts = m.attempts - 1, run_at = r.run_at,"
					 "       leased_until = CASE WHEN r.interrupted THEN r.run_at END"
					 "  FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]),"
					 "                 pg_catalog.unnest($2::pg_catalog.timestamptz[]),"
					 "                 pg_catalog.unnest($3::pg_catalog.bool[])) AS r(id, run_at, interrupted)"
					 " WHERE m.id = r.id AND m.id = ANY ($1)",	/* see lease_plan */
					 3, argtypes);
	if (SPI_execute_plan(release_plan, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "pacelc worker: could not put messages back");
}

/* Should a batch stop taking new messages? */
static bool
batch_should_stop(TimestampTz batch_start)
{
	TimestampTz now = GetCurrentTimestamp();

	return ConfigReloadPending ||
		now >= next_expiry_at ||
		TimestampDifferenceExceeds(batch_start, now, BATCH_BUDGET_MS);
}

/* Tells the other workers to count the files before their next batch. */
static void
announce_orphans(void)
{
	if (wshared == NULL)
		return;
	SpinLockAcquire(&wshared->mutex);
	wshared->orphans++;
	SpinLockRelease(&wshared->mutex);
}

/*
 * At exit, with the transaction still open (before_shmem_exit runs this
 * first): a worker that leaves in the middle of a batch (it gave up on a
 * handler, was terminated) lets go of its file and tells the other workers
 * to count it before they take another batch: its messages are about to be
 * unlocked, and a worker taking one first would run it with this attempt
 * uncounted.  (Its lock on them lasts until the transaction aborts, right
 * after: the counting waits for it.)
 */
static void
inflight_exit(int code, Datum arg)
{
	bool		left;

	pacelc_inflight_settle();	/* only the handlers that started count */
	left = pacelc_inflight_pending();

	pacelc_inflight_close();
	if (left)
		announce_orphans();
}

/* Has a worker left a batch since this one last looked? */
static bool
orphans_changed(void)
{
	bool		changed;

	SpinLockAcquire(&wshared->mutex);
	changed = wshared->orphans != orphans_seen;
	SpinLockRelease(&wshared->mutex);
	return changed;
}

/*
 * Later at exit (on_shmem_exit), once the transaction has aborted and its
 * row locks are gone: a scan made while they were held would have passed
 * the batch's messages by and raised its floor over them again.
 */
static void
inflight_exit_floors(int code, Datum arg)
{
	abandon_open_batch();
}

/* The OID of pacelc.messages, which inflight.c files name. */
static Oid
messages_relid(void)
{
	Oid			nsp = get_namespace_oid("pacelc", true);

	return OidIsValid(nsp) ? get_relname_relid("messages", nsp) : InvalidOid;
}

/* recover_attempts()'s statements, in a subtransaction of their own. */
typedef struct RecoverArgs
{
	Datum		values[3];
	bool		skip_locked;	/* entries of a file whose owner runs */
	uint64		counted;
} RecoverArgs;

static void
recover_update(void *arg)
{
	RecoverArgs *r = (RecoverArgs *) arg;
	Oid			argtypes[3] = {INT8ARRAYOID, INT4ARRAYOID, TIMESTAMPTZOID};
	SPIPlanPtr	plan;

	/*
	 * The state is compared in the "C" collation (for equality the same):
	 * not the partial due index's predicate then, which the planner would
	 * otherwise walk whole, filtering the ids (the kept plan of a queue
	 * whose statistics said "few ready messages"), and beside a long
	 * transaction that index holds an entry for every message handled
	 * since (140 ms per call in the bloat benchmark).
	 */
	if (!r->skip_locked)
		pacelc_keep_plan(&recover_plan,
						 "UPDATE pacelc.messages m SET attempts = m.attempts + 1,"
						 "       run_at = $3, leased_until = $3"
						 "  FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]),"
						 "                 pg_catalog.unnest($2::pg_catalog.int4[])) AS j(id, attempts)"
						 " WHERE m.id = j.id AND m.id = ANY ($1)"	/* see lease_plan */
						 "   AND m.attempts = j.attempts"
						 "   AND m.state = 'ready' COLLATE pg_catalog.\"C\""
						 "   AND m.leased_until IS NULL", 3, argtypes);
	else
		pacelc_keep_plan(&recover_busy_plan,
						 "UPDATE pacelc.messages m SET attempts = m.attempts + 1,"
						 "       run_at = $3, leased_until = $3"
						 "  FROM (SELECT l.id FROM pacelc.messages l,"
						 "               ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]),"
						 "                          pg_catalog.unnest($2::pg_catalog.int4[])) AS j(id, attempts)"
						 "         WHERE l.id = j.id AND l.id = ANY ($1)"
						 "           AND l.attempts = j.attempts"
						 "           AND l.state = 'ready' COLLATE pg_catalog.\"C\""
						 "           AND l.leased_until IS NULL"
						 "           FOR UPDATE OF l SKIP LOCKED) s"
						 " WHERE m.id = s.id", 3, argtypes);
	plan = r->skip_locked ? recover_busy_plan : recover_plan;
	if (SPI_execute_plan(plan, r->values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "pacelc worker: could not count unfinished attempts");
	r->counted = SPI_processed;
}

/*
 * Counts n entries in a subtransaction: waiting for their row locks (a
 * worker that exits holds them until its transaction has aborted), or
 * with skip_locked passing by the rows someone holds.  False: a lock
 * outlasted lock_timeout (a client's open ack() or nack()).
 */
static bool
count_entries(PacelcInflightEntry *entries, int n, bool skip_locked, TimestampTz now)
{
	RecoverArgs r;
	Datum	   *ids = palloc(sizeof(Datum) * n);
	Datum	   *atts = palloc(sizeof(Datum) * n);
	ErrorData  *edata;
	int			i;

	for (i = 0; i < n; i++)
	{
		ids[i] = Int64GetDatum(entries[i].id);
		atts[i] = Int32GetDatum(entries[i].attempts);
	}
	r.values[0] = id_array(ids, n);
	r.values[1] = PointerGetDatum(construct_array(atts, n, INT4OID, sizeof(int32), true,
												  TYPALIGN_INT));
	r.values[2] = TimestampTzGetDatum(now);
	r.skip_locked = skip_locked;
	r.counted = 0;
	edata = pacelc_run_in_subxact(recover_update, &r);
	if (edata != NULL)
	{
		if (edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
			ReThrowError(edata);
		FreeErrorData(edata);
		return false;
	}
	if (r.counted > 0)
		ereport(LOG,
				(errmsg("pacelc worker counted " UINT64_FORMAT " unfinished handler attempts",
						r.counted),
				 errdetail("A worker stopped or the server crashed while their handlers ran.")));
	return true;
}

/*
 * Counts the attempts of batches that never finished (inflight.c): this
 * worker's own, and with inflight_scan those of the database's workers
 * that are not running, and those of running workers whose rows nobody
 * holds (an owner that has not counted its own yet, see
 * pacelc_inflight_collect()).  Each message still ready with the attempts
 * listed and no lease gets the lease that attempt would have committed,
 * already ended, so that its next lease records the attempt as failed
 * ("did not finish"), exactly as for a lease that ran out.  Counting twice
 * (the owner and another worker) changes nothing: the second finds the
 * lease.
 *
 * The statement waits (lock_timeout) for the row locks of a worker that
 * is exiting, which end with its transaction.  A lock that outlasts that
 * is a client's (an ack() or nack() of the message in a transaction left
 * open): the files are kept, to be counted before a later batch, and the
 * worker goes on (with its own file still listing a batch it leases its
 * batches the old way meanwhile) rather than fail its round every time and
 * let one client stall the database's queues.
 */
static void
recover_attempts(void)
{
	PacelcInflightEntry *entries;
	PacelcInflightEntry *busy;
	int			n,
				nbusy;
	TimestampTz now;
	bool		counted = true;

	begin_work("pacelc: counting unfinished attempts");
	n = pacelc_inflight_collect(MyDatabaseId, messages_relid(), inflight_scan,
								&entries, &busy, &nbusy);
	now = GetCurrentTimestamp();
	if (n > 0)
		counted = count_entries(entries, n, false, now);
	if (nbusy > 0)
		(void) count_entries(busy, nbusy, true, now);
	end_work();
	pacelc_inflight_release(counted);
	if (n > 0 || nbusy > 0)
		lower_floors(MyDatabaseId, now);	/* due now, maybe below a floor */
	if (!counted)
		return;					/* inflight_scan stays: again next batch */
	inflight_scan = false;
}

/*
 * The handler and owner of the batch's queue, read in the batch's
 * transaction (the lock statement of a leased batch reads them per
 * message).  NULL handler_name: the queue has none any more.
 */
static void
queue_handler(const char *queue, char **handler_name, Oid *owner)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	bool		isnull;
	Datum		d;

	values[0] = CStringGetTextDatum(queue);
	pacelc_keep_plan(&queue_plan,
					 "SELECT q.handler::pg_catalog.text, q.owner::pg_catalog.oid"
					 "  FROM pacelc.queues q WHERE q.name = $1", 1, argtypes);
	/* not read-only: a fresh snapshot, as the lock statement has */
	if (SPI_execute_plan(queue_plan, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "pacelc worker: could not read queue \"%s\"", queue);
	*handler_name = NULL;
	*owner = InvalidOid;
	if (SPI_processed == 1)
	{
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
			*handler_name = TextDatumGetCString(d);
		*owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
												SPI_tuptable->tupdesc, 2, &isnull));
	}
	SPI_freetuptable(SPI_tuptable);
}

/*
 * Handles one batch of one queue.  It picks a queue and locks up to as many
 * due messages as fit in the batch's time budget (FOR UPDATE SKIP LOCKED),
 * then, in the same transaction, records them in its inflight.c file, runs
 * their handlers until the time budget is used, expiry is due or a reload
 * is pending, and marks the handled ones done (attempts counted) with one
 * UPDATE before it commits; those it did not get to stay as they were.
 *
 * The old way, kept for a batch with a message whose previous attempt
 * never finished (a lease that ran out: the worker gave up on its handler
 * or died, or an inflight.c file counted it) and for a worker that cannot
 * write its file: the batch is leased in a transaction of its own and
 * committed (attempts counted, messages hidden until the lease ends,
 * 2 x handler_timeout, at least 1 s), then locked again in the batch's
 * transaction; the unfinished attempts are recorded as failed, the
 * messages it did not get to put back as they were.
 *
 * Returns false when no queue had due messages for this worker.
 */
static bool
handle_batch(void)
{
	char		queue[NAMEDATALEN];
	Oid			leaseargtypes[4] = {TEXTOID, INT4OID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	Oid			leasemarkargtypes[2] = {INT8ARRAYOID, TIMESTAMPTZOID};
	TimestampTz scan_start;
	TimestampTz requeued_from;
	int			j;
	TimestampTz pending_since;
	TimestampTz new_floor;
	Oid			lockargtypes[2] = {INT8ARRAYOID, TIMESTAMPTZOID};
	bool	   *present;
	LeaseOrder *order;
	Oid			doneargtypes[2] = {INT8ARRAYOID, INT4OID};
	Datum		values[5];
	DueMessage *msgs;
	Datum	   *done_ids;
	int			nlease,
				nleased,
				n,
				ndone = 0,
				nhandled = 0,
				i;
	long		lease_ms = Max(1000L, 2L * handler_timeout_ms);
	TimestampTz lease_until;
	TimestampTz batch_start;
	QueuePace  *pace;
	bool		leased;			/* the old way (see above) */
	bool		reused;			/* the queue taken again without a pick */
	bool		interrupted = false;
	bool		partial = false;	/* fresh messages left for the next batch */
	Datum	   *ids,
			   *runs,
			   *intr;
	PacelcInflightEntry *record;

	if (!inflight_open)
	{
		/* here, not at start: a database without pacelc gets no file */
		pacelc_inflight_open(MyDatabaseId, my_index);
		before_shmem_exit(inflight_exit, (Datum) 0);
		on_shmem_exit(inflight_exit_floors, (Datum) 0);
		inflight_open = true;
	}
	SpinLockAcquire(&wshared->mutex);
	if (wshared->orphans != orphans_seen)
	{
		orphans_seen = wshared->orphans;
		inflight_scan = true;
	}
	SpinLockRelease(&wshared->mutex);
	if (inflight_scan || pacelc_inflight_pending())
		recover_attempts();

	/* 1. pick a queue and lock its due messages */
	begin_work("pacelc: taking messages");
	check_floors();
	if (!pick_queue(queue, &reused))
	{
		plan_next_round();
		end_work();
		return false;
	}
	pace = queue_pace_entry(queue);
	nlease = (int) Min((double) worker_batch,
					   Max(1.0, BATCH_BUDGET_MS / Max(pace->ms_per_message, 0.001)));
	lease_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), lease_ms);
	values[0] = CStringGetTextDatum(queue);
	values[1] = Int32GetDatum(nlease);
	values[2] = TimestampTzGetDatum(pace->floor);
	/* in this order: T0, then the open enqueues, then the scan's snapshot */
	scan_start = GetCurrentTimestamp();
	pending_since = pending_enqueues_since();
	/* a parameter, not clock_timestamp(): the index scan stops there */
	values[3] = TimestampTzGetDatum(scan_start);

	/*
	 * Each statement on pacelc.messages has one way to it whatever the
	 * statistics say: this one the due index, the others the primary key
	 * for the ids it gave.  (One statement joining the two ways let the
	 * planner, with the statistics of a queue truncated when drained, read
	 * the whole primary key per batch, or probe it for every id once per
	 * id; and the plan is kept for the worker's life.)
	 */
	pacelc_keep_plan(&lease_plan,
					 "SELECT m.id, m.run_at, m.leased_until IS NOT NULL, m.attempts, m.payload"
					 "  FROM pacelc.messages m"
					 " WHERE m.queue = $1 AND m.state = 'ready'"
					 "   AND m.run_at <= $4 AND m.run_at >= $3"
					 " ORDER BY m.run_at, m.id LIMIT $2 FOR UPDATE SKIP LOCKED",
					 4, leaseargtypes);
	if (SPI_execute_plan(lease_plan, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "pacelc worker: could not lease messages");
	nleased = (int) SPI_processed;
	/* (timed here: a lease's commit below may wait for a standby) */
	full_scan_done();

	/*
	 * A worker that left in the middle of a batch tells the others before
	 * its transaction ends and lets go of its messages (inflight_exit()):
	 * if it did since this batch looked, the rows just locked may be its,
	 * with that attempt not counted yet.  Leave them: the next batch counts
	 * its file first.
	 */
	if (nleased > 0 && orphans_changed())
	{
		SPI_freetuptable(SPI_tuptable);
		end_work();
		set_my_queue("");
		return true;
	}
	/* in the round's memory: they outlive this transaction */
	ids = MemoryContextAlloc(round_cxt, sizeof(Datum) * Max(nleased, 1));
	runs = MemoryContextAlloc(round_cxt, sizeof(Datum) * Max(nleased, 1));
	intr = MemoryContextAlloc(round_cxt, sizeof(Datum) * Max(nleased, 1));
	/* the way without a lease: what the lock statement would read */
	msgs = palloc(sizeof(DueMessage) * Max(nleased, 1));
	record = palloc(sizeof(PacelcInflightEntry) * Max(nleased, 1));
	for (i = 0; i < nleased; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		ids[i] = SPI_getbinval(tup, desc, 1, &isnull);
		runs[i] = SPI_getbinval(tup, desc, 2, &isnull);
		intr[i] = SPI_getbinval(tup, desc, 3, &isnull);
		interrupted |= DatumGetBool(intr[i]);
		msgs[i].id = DatumGetInt64(ids[i]);
		msgs[i].attempts = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull)) + 1;
		msgs[i].handler = InvalidOid;
		msgs[i].payload =
			PointerGetDatum(PG_DETOAST_DATUM_COPY(SPI_getbinval(tup, desc, 5, &isnull)));
		msgs[i].old_run_at = DatumGetTimestampTz(runs[i]);
		msgs[i].interrupted = false;
		record[i].id = msgs[i].id;
		record[i].attempts = msgs[i].attempts - 1;
		record[i].pad = 0;
	}
	SPI_freetuptable(SPI_tuptable);

	/*
	 * Messages whose earlier attempt never finished go the lease way, and
	 * alone: a fresh message leased with them would have its own attempt,
	 * should that not finish either, counted only when the lease ran out.
	 * The others stay as they are for the next batch (no floor passes them).
	 */
	if (interrupted)
	{
		int			k = 0;

		for (i = 0; i < nleased; i++)
		{
			if (!DatumGetBool(intr[i]))
				continue;
			ids[k] = ids[i];
			runs[k] = runs[i];
			intr[k] = intr[i];
			msgs[k] = msgs[i];
			record[k] = record[i];
			k++;
		}
		partial = k < nleased;
		nleased = k;
	}
	leased = nleased > 0 &&
		(interrupted || !pacelc_inflight_write(messages_relid(), record, nleased));
	if (nleased > 0 && !leased)
	{
		open_batch_from = msgs[0].old_run_at;	/* the scan's order */
		set_my_batch(nleased);
	}
	if (leased)
	{
		values[0] = id_array(ids, nleased);
		values[1] = TimestampTzGetDatum(lease_until);
		pacelc_keep_plan(&lease_mark_plan,
						 "UPDATE pacelc.messages m SET attempts = m.attempts + 1,"
						 "       run_at = $2, leased_until = $2"
						 " WHERE m.id = ANY ($1)", 2, leasemarkargtypes);
		/* (the lock statement takes only the rows under this lease) */
		if (SPI_execute_plan(lease_mark_plan, values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "pacelc worker: could not lease messages");
	}
	if (nleased == 0 || leased)
		end_work();
	strlcpy(last_queue, queue, NAMEDATALEN);
	/* raise the floor (see QueuePace) unless rows were skipped as locked */
	new_floor = Min(scan_start, pending_since);
	if (nleased == nlease)
		new_floor = Min(new_floor, DatumGetTimestampTz(runs[nleased - 1]));
	if (nleased > 0 && new_floor > pace->floor && !partial)
		pace->floor = new_floor;
	if (nleased == 0 && reused)
	{
		/* drained, most likely: the pick statement decides (reuse_pick()) */
		forget_reuse();
		set_my_queue("");
		return true;
	}
	if (nleased == 0)
	{
		/* all locked by someone else: leave this queue for the round */
		MemoryContext old = MemoryContextSwitchTo(round_cxt);

		skipped_queues = lappend(skipped_queues, pstrdup(queue));
		MemoryContextSwitchTo(old);
		set_my_queue("");
		return true;
	}
	if (nleased == nlease)
		wake_sibling();			/* there may be more: let an idle one look */

	/* 2. handle them */
	if (!leased)
	{
		char	   *handler_name;
		Oid			owner;

		pgstat_report_activity(STATE_RUNNING, "pacelc: handling messages");
		queue_handler(queue, &handler_name, &owner);
		for (i = 0; i < nleased; i++)
		{
			msgs[i].handler_name = handler_name;
			msgs[i].owner = owner;
		}
		n = nleased;
	}
	else
	{
		begin_work("pacelc: handling messages");
		msgs = palloc(sizeof(DueMessage) * nleased);	/* the other's is gone */
		values[0] = id_array(ids, nleased);
		values[1] = TimestampTzGetDatum(lease_until);
		pacelc_keep_plan(&lock_plan,
						 "SELECT m.id, m.attempts, q.handler::pg_catalog.text,"
						 "       q.owner::pg_catalog.oid, m.payload, m.state = 'ready'"
						 "  FROM pacelc.messages m,"
		/* a probe per message, never the queues first (OFFSET 0) */
						 "       LATERAL (SELECT q.handler, q.owner FROM pacelc.queues q"
						 "                 WHERE q.name = m.queue OFFSET 0) q"

		/*
		 * the batch's ids (the primary key's probe, see lease_plan) under
		 * our lease; the state is tested in C (column 6), not here, where it
		 * would let the planner walk the partial due index instead
		 */
						 " WHERE m.id = ANY ($1) AND m.leased_until = $2"
						 "   FOR UPDATE OF m SKIP LOCKED", 2, lockargtypes);
		if (SPI_execute_plan(lock_plan, values, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "pacelc worker: could not lock its leased messages");
		/* in the lease's order: slot k for the k-th message leased */
		present = palloc0(sizeof(bool) * nleased);
		order = lease_order_make(ids, nleased);
		for (j = 0; j < (int) SPI_processed; j++)
		{
			HeapTuple	tup = SPI_tuptable->vals[j];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			Datum		d;
			int64		id;

			/* no longer 'ready' although still under our lease: not ours */
			if (!DatumGetBool(SPI_getbinval(tup, desc, 6, &isnull)) || isnull)
				continue;
			id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
			i = lease_order_find(order, nleased, id);
			present[i] = true;
			msgs[i].id = id;
			msgs[i].attempts = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
			msgs[i].handler = InvalidOid;	/* resolved at the call */
			d = SPI_getbinval(tup, desc, 3, &isnull);
			msgs[i].handler_name = isnull ? NULL : TextDatumGetCString(d);
			msgs[i].owner = DatumGetObjectId(SPI_getbinval(tup, desc, 4, &isnull));
			msgs[i].payload =
				PointerGetDatum(PG_DETOAST_DATUM_COPY(SPI_getbinval(tup, desc, 5, &isnull)));
			msgs[i].old_run_at = DatumGetTimestampTz(runs[i]);
			msgs[i].interrupted = DatumGetBool(intr[i]);
		}
		/* those it got, in the lease's order */
		n = 0;
		for (i = 0; i < nleased; i++)
			if (present[i])
				msgs[n++] = msgs[i];
		SPI_freetuptable(SPI_tuptable);
	}
	done_ids = palloc(sizeof(Datum) * nleased);
	batch_handler_name = NULL;
	batch_start = GetCurrentTimestamp();
	for (i = 0; i < n; i++)
	{
		DueMessage *m = &msgs[i];

		CHECK_FOR_INTERRUPTS();
		if (i > 0 && batch_should_stop(batch_start))
			break;
		if (m->handler_name == NULL)
			break;				/* the queue has no handler any more */
		if (m->interrupted)
		{
			/* the worker gave up on (or died in) its previous attempt */
			record_failure(m,
						   psprintf("attempt %d did not finish: the handler ran past \"pacelc.handler_timeout\" and ignored cancellation, or the worker stopped",
									m->attempts - 1),
						   "57014", m->attempts - 1);
			nhandled++;
			continue;
		}
		if (!leased)
			pacelc_inflight_reached(i + 1); /* an attempt from here on */
		if (handle_message(m, queue))
			done_ids[ndone++] = Int64GetDatum(m->id);
		nhandled++;
	}
	/* retried or put back: due again at times the floors may have passed */
	requeued_from = DT_NOEND;
	if (nhandled > ndone)
		requeued_from = batch_start;	/* failed: due again after it */
	for (j = i; j < n; j++)
		requeued_from = Min(requeued_from, msgs[j].old_run_at);	/* put back */
	/* those it did not get to go back as they were (unleased: they are) */
	if (leased)
		release_messages(msgs, i, n);
	if (ndone > 0)
	{
		values[0] = id_array(done_ids, ndone);
		values[1] = Int32GetDatum(leased ? 0 : 1);
		pacelc_keep_plan(&done_plan,
						 "UPDATE pacelc.messages SET state = 'done', attempts = attempts + $2,"
						 "       done_at = pg_catalog.clock_timestamp(), leased_until = NULL"
						 " WHERE id OPERATOR(pg_catalog.=) ANY ($1)", 2, doneargtypes);
		if (SPI_execute_plan(done_plan, values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "pacelc worker: could not mark messages done");
	}
	if (nhandled > 0)
	{
		long		secs;
		int			usecs;
		double		ms;

		TimestampDifference(batch_start, GetCurrentTimestamp(), &secs, &usecs);
		ms = (secs * 1000.0 + usecs / 1000.0) / nhandled;
		pace->ms_per_message = 0.5 * pace->ms_per_message + 0.5 * ms;
	}
	end_work();
	if (!leased)
	{
		pacelc_inflight_clear();	/* committed: every attempt is counted */
		open_batch_from = DT_NOEND;
		set_my_batch(0);
	}
	if (requeued_from != DT_NOEND)
		lower_floors(MyDatabaseId, requeued_from);
	/* keeps the queue while it lingers: enqueues then wake no other worker */
	linger = worker_linger_ms > 0 && nleased >= 2 && nleased < nlease && i == n &&
		!partial;
	if (!linger)
		set_my_queue("");
	return true;
}

/* Milliseconds until the next due message or hold expiry, capped. */
static long
next_sleep_ms(TimestampTz now)
{
	TimestampTz next = Min(next_message_at, next_expiry_at);
	long		ms = worker_naptime_s * 1000L;
	long		secs;
	int			usecs;

	if (next == DT_NOEND)
		return ms;
	if (next <= now)
		return 100;				/* due but locked or at its limit: do not spin */
	TimestampDifference(now, next, &secs, &usecs);
	return Min(ms, secs * 1000L + usecs / 1000 + 1);
}

static void
reload_config_if_pending(void)
{
	if (!ConfigReloadPending)
		return;
	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	forget_reuse();				/* its limit: pacelc.queue_concurrency */
	if (!database_wanted(my_dbname))
		proc_exit(0);			/* pacelc.databases no longer names us */
	if (my_index >= pool_size())
		proc_exit(0);			/* the pool got smaller */
}

/*
 * One round: batches of due messages, queue after queue, with hold expiry
 * in between whenever it is due (and at least every EXPIRY_CHECK_MS, shared
 * by the database's workers), and the first worker's housekeeping every
 * naptime.  Returns how long to sleep.
 */
static long
worker_round(TimestampTz *last_full)
{
	planned = false;
	skipped_queues = NIL;
	if (check_extension)
	{
		exit_if_no_extension();
		check_extension = false;
	}
	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();

		if (my_index == 0 &&
			(now < *last_full ||	/* the clock stepped back */
			 TimestampDifferenceExceeds(*last_full, now, worker_naptime_s * 1000)))
		{
			exit_if_no_extension();
			housekeeping(true);
			inflight_scan = true;	/* a pool that shrank, a worker gone */
			*last_full = now;
			last_expiry_check = now;
		}
		else if (now >= next_expiry_at ||
				 TimestampDifferenceExceeds(last_expiry_check, now, EXPIRY_CHECK_MS))
		{
			last_expiry_check = now;
			if (claim_expiry(now, now >= next_expiry_at ? 0 : EXPIRY_CHECK_MS))
			{
				PG_TRY();
				{
					housekeeping(false);
				}
				PG_FINALLY();
				{
					release_expiry(GetCurrentTimestamp());
				}
				PG_END_TRY();
			}
		}
		if (my_index == 0)
			ensure_helpers();	/* the pool may have grown (SIGHUP) */
		planned = false;
		if (!handle_batch())
			break;
		if (linger)
		{
			(void) WaitLatch(NULL, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, worker_linger_ms,
							 PG_WAIT_EXTENSION);
			set_my_queue("");
			linger = false;
		}
		CHECK_FOR_INTERRUPTS();
		reload_config_if_pending();
		leave_if_database_locked();
	}
	if (!planned)
	{
		begin_work("pacelc: planning");
		plan_next_round();
		end_work();
	}
	return next_sleep_ms(GetCurrentTimestamp());
}

/* The first worker keeps the rest of its database's pool running. */
static BackgroundWorkerHandle **helper_handles = NULL;
static TimestampTz *helper_next_try = NULL;
static int *helper_failures = NULL;
static TimestampTz helper_exhausted_log = 0;

static void
ensure_helpers(void)
{
	int			size = pool_size();
	int			i;
	TimestampTz now = GetCurrentTimestamp();

	if (helper_handles == NULL)
	{
		helper_handles = MemoryContextAllocZero(TopMemoryContext,
												sizeof(BackgroundWorkerHandle *) * 65);
		helper_next_try = MemoryContextAllocZero(TopMemoryContext, sizeof(TimestampTz) * 65);
		helper_failures = MemoryContextAllocZero(TopMemoryContext, sizeof(int) * 65);
	}
	for (i = 1; i < size && i < 65; i++)
	{
		pid_t		pid;

		if (helper_handles[i] != NULL)
		{
			if (GetBackgroundWorkerPid(helper_handles[i], &pid) != BGWH_STOPPED)
				continue;
			pfree(helper_handles[i]);
			helper_handles[i] = NULL;
			/* it stopped: a second later, then less and less often */
			helper_failures[i]++;
			helper_next_try[i] = TimestampTzPlusMilliseconds(now,
															 backoff_ms(helper_failures[i], worker_naptime_s * 1000L));
		}
		if (now < helper_next_try[i] || pool_slot_taken(MyDatabaseId, i))
			continue;
		if (!start_database_worker(MyDatabaseId, my_dbname, i, &helper_handles[i]))
		{
			helper_handles[i] = NULL;
			helper_failures[i]++;
			helper_next_try[i] = TimestampTzPlusMilliseconds(now, worker_naptime_s * 1000L);
			if (TimestampDifferenceExceeds(helper_exhausted_log, now, worker_naptime_s * 1000))
			{
				ereport(LOG,
						(errmsg("pacelc worker for database \"%s\" could not start worker %d of %d: no background worker slot is free",
								my_dbname, i + 1, size),
						 errhint("Increase \"max_worker_processes\" or lower \"pacelc.workers_per_database\".")));
				helper_exhausted_log = now;
			}
		}
		else
			helper_failures[i] = 0;
	}
}

void
pacelc_worker_main(Datum arg)
{
	Oid			dbid = DatumGetObjectId(arg);
	TimestampTz last_full = 0;
	MemoryContext round_context;
	HASHCTL		ctl;
	char	   *dbname;

	memcpy(&my_index, MyBgworkerEntry->bgw_extra, sizeof(int));
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	if (!claim_pool_slot(dbid, my_index))
		proc_exit(0);			/* someone else is this worker of the database */
	before_shmem_exit(release_pool_slot, (Datum) 0);
	before_shmem_exit(log_give_up, (Datum) 0);

	BackgroundWorkerInitializeConnectionByOid(dbid, InvalidOid, 0);

	/*
	 * a GUC, not just the activity entry: handlers' changes get reverted to
	 * it
	 */
	SetConfigOption("application_name", "pacelc worker", PGC_USERSET, PGC_S_OVERRIDE);
	StartTransactionCommand();
	dbname = get_database_name(dbid);
	if (dbname == NULL)
		proc_exit(0);			/* dropped meanwhile */
	my_dbname = MemoryContextStrdup(TopMemoryContext, dbname);
	CommitTransactionCommand();
	if (!database_wanted(my_dbname) || my_index >= pool_size())
		proc_exit(0);

	give_up_timeout = RegisterTimeout(USER_TIMEOUT, give_up_handler);
#if PG_VERSION_NUM >= 170000 && !defined(USE_ASSERT_CHECKING)
	RegisterTimeout(TRANSACTION_TIMEOUT, transaction_timeout_handler);
#endif

	/*
	 * If DDL such as DROP EXTENSION deadlocks with a round, let the worker be
	 * the one that notices and gives way, not the user's command.
	 */
	SetConfigOption("deadlock_timeout", "10ms", PGC_SUSET, PGC_S_OVERRIDE);

	worker_settings_apply();

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = NAMEDATALEN;
	ctl.entrysize = sizeof(QueuePace);
	ctl.hcxt = TopMemoryContext;
	queue_pace = hash_create("pacelc queue pace", 16, &ctl,
							 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	round_context = AllocSetContextCreate(TopMemoryContext, "pacelc worker round",
										  ALLOCSET_DEFAULT_SIZES);
	round_cxt = round_context;
	for (;;)
	{
		long		sleep_ms = worker_naptime_s * 1000L;

		CHECK_FOR_INTERRUPTS();
		reload_config_if_pending();
		leave_if_database_locked();

		MemoryContextSwitchTo(round_context);
		PG_TRY();
		{
			if (my_index == 0)
				ensure_helpers();
			sleep_ms = worker_round(&last_full);
		}
		PG_CATCH();
		{
			/* log it, clean up, and try again after a pause */
			MemoryContextSwitchTo(round_context);
			if (geterrcode() != ERRCODE_LOCK_NOT_AVAILABLE)
				EmitErrorReport();	/* not a lock_timeout: DDL was at work */
			FlushErrorState();
			AbortOutOfAnyTransaction();
			pacelc_inflight_settle();
			/* its messages are free now: the others count them first */
			if (pacelc_inflight_pending())
				announce_orphans();
			abandon_open_batch();
			pacelc_inflight_release(false);
			set_my_queue("");
			forget_reuse();
			full_scan_timed = false;	/* its pause is no scan */
			check_extension = true;
			sleep_ms = 1000;
		}
		PG_END_TRY();
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(round_context);
		skipped_queues = NIL;

		/* sleep, looking now and then whether the database is being dropped */
		set_idle(true, TimestampTzPlusMilliseconds(GetCurrentTimestamp(), sleep_ms));
		while (sleep_ms > 0)
		{
			long		slice = Min(sleep_ms, DROP_CHECK_MS);
			int			rc;

			rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						   slice, PG_WAIT_EXTENSION);

			/*
			 * woken: maybe by DROP EXTENSION, then leave (DROP DATABASE
			 * waits)
			 */
			if (rc & WL_LATCH_SET)
				check_extension = true;
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			if ((rc & WL_LATCH_SET) || ConfigReloadPending)
				break;
			leave_if_database_locked();
			sleep_ms -= slice;
		}
		set_idle(false, 0);
	}
}
