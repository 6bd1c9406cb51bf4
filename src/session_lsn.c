/*-------------------------------------------------------------------------
 *
 * session_lsn.c
 *		Session LSN tokens: read-your-writes and monotonic reads on hot
 *		standbys (SPEC section 2).
 *
 * Writers get their token for free: at commit of a transaction that changed
 * something, the end of its commit record is published in the reported GUC
 * pacelc.commit_lsn, which PostgreSQL sends to the client in a
 * ParameterStatus message before ReadyForQuery.
 *
 * Readers present the token on a standby (wait_for_lsn(), or the GUC
 * pacelc.read_after, which makes statements wait before their snapshot).
 * Waiting must wake when replay passes the target, not poll.  PostgreSQL 15
 * to 18 have no hook or facility for "replay advanced", so replay_hook.c
 * calls this module in the startup process (see there why, what it costs
 * and the fallback): after each record it compares the record's end with
 * the smallest pending target (one atomic read) and only when that is due
 * walks the compact list of waiters and sets their latches; when it
 * exits (promotion) it wakes them all.  Waiters also re-check after 50 ms,
 * backing off to 500 ms, which bounds the reaction to a recovery conflict
 * they cause.
 *
 * The rule: a statement either reads a snapshot that includes the token or
 * fails with a retryable error.  Waiting before the snapshot is the normal
 * path; whatever made the snapshot (a re-executed prepared statement, a
 * cursor, an imported snapshot, a token set mid-transaction), it is proved
 * to include the token against a witness snapshot taken after replay was
 * seen past the token (snapshot_includes), or refreshed (READ COMMITTED,
 * nothing read yet), or the statement fails with 40001.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "access/parallel.h"
#include "access/transam.h"
#include "access/twophase.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "access/xlogreader.h"
#include "access/xlogrecovery.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/analyze.h"
#include "pgstat.h"
#include "replication/walreceiver.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/pquery.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/portal.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "replay_hook.h"
#include "session_lsn.h"
#include "support.h"
#include "worker.h"

/* waiters re-check after 50 ms, then less and less often, up to 500 ms */
#define FALLBACK_RECHECK_MS 50
#define FALLBACK_RECHECK_MAX_MS 500
#define NO_TARGET	PG_UINT64_MAX

#if PG_VERSION_NUM >= 170000
#define pacelc_lock_held(tag, mode) LockHeldByMe((tag), (mode), false)
#else
#define pacelc_lock_held(tag, mode) LockHeldByMe((tag), (mode))
#endif

/*
 * Shared state.  Waiters register in a compact list under a spinlock and
 * publish the smallest pending target in min_target, so that the startup
 * process does one atomic read and compare per replayed record while no
 * target is due, however many waiters and backend slots there are.
 */
typedef struct LsnShared
{
	pg_atomic_uint64 replayed_hint; /* end of the last record whose redo ended */
	pg_atomic_uint64 min_target;	/* smallest pending target, NO_TARGET if
									 * none */
	pg_atomic_uint32 nwaiters;
	pg_atomic_uint32 redo_seen; /* redo ran since the server started */
	pg_atomic_uint64 waits;
	pg_atomic_uint64 timeouts;
	pg_atomic_uint64 wait_us_total;
	pg_atomic_uint64 wait_us_max;
	pg_atomic_uint32 startup_procno;	/* the startup process's PGPROC + 1 */
	slock_t		mutex;			/* protects nactive, active[], targets[] */
	int			nactive;
	int			nslots;
	int		   *active;			/* procnos of the waiters (nactive of them) */
	uint64		targets[FLEXIBLE_ARRAY_MEMBER]; /* per PGPROC */
} LsnShared;

static LsnShared *lsn_shared = NULL;

/* GUCs */
static char *commit_lsn_guc = NULL;
static char *seen_lsn_guc = NULL;
static char *read_after_guc = NULL;
static int	wait_timeout_ms = 5000;
static int	max_staleness_ms = -1;

/* read_after as parsed by the check hook */
static XLogRecPtr read_after_lsn = InvalidXLogRecPtr;

/* This session's state */
static XLogRecPtr last_commit_end = InvalidXLogRecPtr;
static XLogRecPtr waited_floor = InvalidXLogRecPtr; /* wait_for_lsn() in this
													 * xact */
static bool commit_prepared_in_xact = false;
static char seen_set[32];		/* pacelc.seen_lsn as last set */
static char seen_at_xact_end[32];	/* ... as it was at the last transaction
									 * end */

/*
 * A witness: a snapshot this backend took after it saw replay reach
 * witness_lsn, so it includes every commit up to there.  Any snapshot that
 * sees as completed everything the witness sees as completed includes them
 * too (snapshot_dominates); that proves a snapshot fresh whatever its
 * origin: a portal's copy, a cursor's, an imported one.
 */
static SnapshotData witness = {SNAPSHOT_MVCC};
static XLogRecPtr witness_lsn = InvalidXLogRecPtr;
static TransactionId *witness_running = NULL;	/* sorted xip + subxip */
static int	witness_nrunning = 0;

/* Held cursors keep data read with the snapshot they were declared with. */
typedef struct HeldCursor
{
	Portal		portal;
	TimestampTz created;
	XLogRecPtr	proved;			/* LSN its snapshot is known to include */
} HeldCursor;
#define NHELD 32
static HeldCursor held[NHELD];
static int	held_next = 0;

static post_parse_analyze_hook_type prev_post_parse_analyze_hook = NULL;
static ExecutorStart_hook_type prev_ExecutorStart = NULL;
static ExecutorRun_hook_type prev_ExecutorRun = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

static void lsn_xact_callback(XactEvent event, void *arg);
static void lsn_post_parse_analyze(ParseState *pstate, Query *query,
								   JumbleState *jstate);
static void lsn_ExecutorStart(QueryDesc *queryDesc, int eflags);
#if PG_VERSION_NUM >= 180000
static void lsn_ExecutorRun(QueryDesc *queryDesc, ScanDirection direction,
							uint64 count);
#else
static void lsn_ExecutorRun(QueryDesc *queryDesc, ScanDirection direction,
							uint64 count, bool execute_once);
#endif
static void lsn_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
							   bool readOnlyTree, ProcessUtilityContext context,
							   ParamListInfo params, QueryEnvironment *queryEnv,
							   DestReceiver *dest, QueryCompletion *qc);
static bool lsn_replay_start(void);
static void lsn_replay_record(XLogReaderState *record);

/* ---------------------------------------------------------------------
 * Set-up
 * --------------------------------------------------------------------- */

/*
 * A token is an LSN ("0/16B3748"), or a node token naming the server it
 * was taken on: "SYSTEM_IDENTIFIER:LSN" (pacelc.node_token()).  A standby
 * has its primary's system identifier, so a node token tells the standbys
 * of that server from every other server's (the nodes of a Citus cluster
 * each have their own).  Returns false when the text is neither.
 */
static bool
parse_token(const char *text, uint64 *sysid, XLogRecPtr *lsn)
{
	const char *colon = strchr(text, ':');
	bool		have_error = false;

	*sysid = 0;
	if (colon != NULL)
	{
		char	   *end;

		if (colon == text || !isdigit((unsigned char) text[0]))
			return false;
		errno = 0;
		*sysid = strtou64(text, &end, 10);
		if (errno != 0 || end != colon || *sysid == 0)
			return false;
		text = colon + 1;
	}
	*lsn = pg_lsn_in_internal(text, &have_error);
	return !have_error;
}

static bool
check_read_after(char **newval, void **extra, GucSource source)
{
	uint64		sysid;
	XLogRecPtr	lsn;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (!parse_token(*newval, &sysid, &lsn))
	{
		GUC_check_errdetail("\"%s\" is not an LSN such as 0/16B3748, nor a node token such as 7443350953153712345:0/16B3748.",
							*newval);
		return false;
	}
	if (sysid != 0 && !IsUnderPostmaster)
	{
		GUC_check_errdetail("A node token is set per session, not in the configuration file.");
		return false;
	}
	if (sysid != 0 && sysid != GetSystemIdentifier())
	{
		GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
		GUC_check_errdetail("The token was taken on the server with system identifier %llu; this server's is %llu.",
							(unsigned long long) sysid,
							(unsigned long long) GetSystemIdentifier());
		GUC_check_errhint("Present a node's token to that node or its standbys (on Citus: the token pacelc.citus_token(sku) returns for the SKU's node).");
		return false;
	}
	return true;
}

static void
assign_read_after(const char *newval, void *extra)
{
	uint64		sysid;
	XLogRecPtr	lsn;

	if (newval == NULL || newval[0] == '\0' || !parse_token(newval, &sysid, &lsn))
		read_after_lsn = InvalidXLogRecPtr;
	else
		read_after_lsn = lsn;
}

void
pacelc_session_lsn_init(void)
{
	DefineCustomStringVariable("pacelc.commit_lsn",
							   "End LSN of this session's last commit (the read-your-writes token).",
							   "Reported to the client after each commit that wrote something.",
							   &commit_lsn_guc, "",
							   PGC_INTERNAL,
							   GUC_REPORT | GUC_NOT_IN_SAMPLE | GUC_DISALLOW_IN_FILE,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("pacelc.seen_lsn",
							   "On a standby, the replay LSN the last statement's snapshot reflects at most.",
							   "Reported to the client in every transaction that ran a statement; keep max(commit_lsn, seen_lsn) as a causal token.",
							   &seen_lsn_guc, "",
							   PGC_INTERNAL,
							   GUC_REPORT | GUC_NOT_IN_SAMPLE | GUC_DISALLOW_IN_FILE,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("pacelc.read_after",
							   "On a standby, statements wait until replay reaches this LSN before taking their snapshot.",
							   "Empty turns it off.",
							   &read_after_guc, "",
							   PGC_USERSET, 0,
							   check_read_after, assign_read_after, NULL);
	DefineCustomIntVariable("pacelc.wait_timeout",
							"How long a standby waits for replay to reach pacelc.read_after.",
							NULL, &wait_timeout_ms, 5000, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pacelc.max_staleness",
							"On a standby, refuse statements unless the data is provably at most this old (-1: off).",
							NULL, &max_staleness_ms, -1, -1, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);

	RegisterXactCallback(lsn_xact_callback, NULL);

	prev_post_parse_analyze_hook = post_parse_analyze_hook;
	post_parse_analyze_hook = lsn_post_parse_analyze;
	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = lsn_ExecutorStart;
	prev_ExecutorRun = ExecutorRun_hook;
	ExecutorRun_hook = lsn_ExecutorRun;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = lsn_ProcessUtility;

	/* wake waiters right after replay (replay_hook.c, with its fallback) */
	if (!pacelc_replay_hook_install(lsn_replay_start, lsn_replay_record))
		ereport(LOG,
				(errmsg("pacelc could not wrap the redo functions: waits for replay poll")));
}

static int
lsn_nslots(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
}

Size
pacelc_session_lsn_shmem_size(void)
{
	return add_size(add_size(offsetof(LsnShared, targets),
							 mul_size(lsn_nslots(), sizeof(uint64))),
					mul_size(lsn_nslots(), sizeof(int)));
}

void
pacelc_session_lsn_shmem_startup(void)
{
	bool		found;
	int			i;

	lsn_shared = ShmemInitStruct("pacelc session lsn", pacelc_session_lsn_shmem_size(), &found);
	if (!found)
	{
		pg_atomic_init_u64(&lsn_shared->replayed_hint, 0);
		pg_atomic_init_u64(&lsn_shared->min_target, NO_TARGET);
		pg_atomic_init_u32(&lsn_shared->nwaiters, 0);
		pg_atomic_init_u32(&lsn_shared->redo_seen, 0);
		pg_atomic_init_u64(&lsn_shared->waits, 0);
		pg_atomic_init_u64(&lsn_shared->timeouts, 0);
		pg_atomic_init_u64(&lsn_shared->wait_us_total, 0);
		pg_atomic_init_u64(&lsn_shared->wait_us_max, 0);
		pg_atomic_init_u32(&lsn_shared->startup_procno, 0);
		SpinLockInit(&lsn_shared->mutex);
		lsn_shared->nactive = 0;
		lsn_shared->nslots = lsn_nslots();
		for (i = 0; i < lsn_shared->nslots; i++)
			lsn_shared->targets[i] = 0;
	}
	lsn_shared->active = (int *) &lsn_shared->targets[lsn_shared->nslots];
}

/* ---------------------------------------------------------------------
 * The startup process side
 * --------------------------------------------------------------------- */

/*
 * A target is due: wake the waiters whose targets replay reached and
 * publish the next smallest target.  Runs in the startup process; the
 * latches are set after the spinlock is released.
 */
static void
wake_due_waiters(XLogRecPtr end)
{
	static int *wake = NULL;
	int			nwake = 0;
	int			i;
	uint64		next = NO_TARGET;

	if (wake == NULL)
		wake = MemoryContextAlloc(TopMemoryContext, sizeof(int) * lsn_shared->nslots);
	SpinLockAcquire(&lsn_shared->mutex);
	for (i = 0; i < lsn_shared->nactive; i++)
	{
		int			slot = lsn_shared->active[i];
		uint64		target = lsn_shared->targets[slot];

		if (target <= end)
			wake[nwake++] = slot;
		else if (target < next)
			next = target;
	}
	pg_atomic_write_u64(&lsn_shared->min_target, next);
	SpinLockRelease(&lsn_shared->mutex);
	for (i = 0; i < nwake; i++)
		SetLatch(&ProcGlobal->allProcs[wake[i]].procLatch);
}

/*
 * The startup process exits when recovery ends (promotion): every waiter
 * must look at once.
 */
static void
wake_all_waiters(int code, Datum arg)
{
	wake_due_waiters(PG_UINT64_MAX - 1);
}

/*
 * Before the first replayed record: waiters look at what replay is blocked
 * on (see replay_blocked_by_us), and all of them at once when it ends.
 */
static bool
lsn_replay_start(void)
{
	if (lsn_shared == NULL)
		return false;
	pg_atomic_write_u32(&lsn_shared->startup_procno, PACELC_MY_PROCNO + 1);
	pg_atomic_write_u32(&lsn_shared->redo_seen, 1);
	on_shmem_exit(wake_all_waiters, (Datum) 0);
	return true;
}

/* After each replayed record: O(1) unless a waiter's target is due. */
static void
lsn_replay_record(XLogReaderState *record)
{
	if (lsn_shared != NULL)
	{
		pg_atomic_write_u64(&lsn_shared->replayed_hint, record->EndRecPtr);
		pg_memory_barrier();
		if (record->EndRecPtr >= pg_atomic_read_u64(&lsn_shared->min_target))
			wake_due_waiters(record->EndRecPtr);
	}
}

/* ---------------------------------------------------------------------
 * Replay positions and snapshots
 * --------------------------------------------------------------------- */

/*
 * What this node has applied: replay on a standby, insert on a primary.
 */
static XLogRecPtr
current_replay(void)
{
	XLogRecPtr	replay;
	XLogRecPtr	hint;

	if (!RecoveryInProgress())
		return GetXLogInsertRecPtr();
	replay = GetXLogReplayRecPtr(NULL);
	hint = lsn_shared ? (XLogRecPtr) pg_atomic_read_u64(&lsn_shared->replayed_hint) : 0;
	return Max(replay, hint);
}

/*
 * Takes a new witness if replay has reached target.  The redo of a commit
 * record updates the known-assigned xids before replay's position moves
 * past it, so a snapshot taken after seeing the position includes it.
 */
static bool
take_witness(XLogRecPtr target)
{
	XLogRecPtr	replay = current_replay();
	int			n;

	if (replay < target)
		return false;
	pg_read_barrier();
	GetSnapshotData(&witness);
	witness_lsn = replay;
	n = witness.xcnt + witness.subxcnt;
	if (witness_running == NULL)
		witness_running = MemoryContextAlloc(TopMemoryContext,
											 sizeof(TransactionId) *
											 (GetMaxSnapshotXidCount() + GetMaxSnapshotSubxidCount()));
	if (witness.xcnt > 0)
		memcpy(witness_running, witness.xip, sizeof(TransactionId) * witness.xcnt);
	if (witness.subxcnt > 0)
		memcpy(witness_running + witness.xcnt, witness.subxip, sizeof(TransactionId) * witness.subxcnt);
	if (n > 1)
		qsort(witness_running, n, sizeof(TransactionId), xidComparator);
	witness_nrunning = n;
	return true;
}

/*
 * Does snap see as completed every transaction the witness sees as
 * completed?  Its xmax is not older, and each xid it deems running below
 * the witness's xmax is running for the witness too (an overflowed
 * subtransaction cache in snap but not in the witness proves nothing).
 */
static bool
snapshot_dominates(Snapshot snap)
{
	int			i;

	if (TransactionIdPrecedes(snap->xmax, witness.xmax))
		return false;
	if (snap->suboverflowed && !witness.suboverflowed)
		return false;
	for (i = 0; i < snap->xcnt + snap->subxcnt; i++)
	{
		TransactionId xid = i < snap->xcnt ? snap->xip[i] : snap->subxip[i - snap->xcnt];

		if (!TransactionIdPrecedes(xid, witness.xmax))
			continue;
		if (bsearch(&xid, witness_running, witness_nrunning, sizeof(TransactionId),
					xidComparator) == NULL)
			return false;
	}
	return true;
}

/* Does this snapshot include every commit up to target? */
static bool
snapshot_includes(Snapshot snap, XLogRecPtr target)
{
	if (snap == NULL || snap->snapshot_type != SNAPSHOT_MVCC || !snap->takenDuringRecovery)
		return true;
	if (witness_lsn < target && !take_witness(target))
		return false;
	return snapshot_dominates(snap);
}

/* The LSN a snapshot is known to include everything up to, if any. */
static XLogRecPtr
snapshot_proved(Snapshot snap)
{
	if (snap == NULL || !snap->takenDuringRecovery)
		return PG_UINT64_MAX;
	if (!XLogRecPtrIsInvalid(witness_lsn) && snapshot_dominates(snap))
		return witness_lsn;
	return InvalidXLogRecPtr;
}

/* The token statements are held to: read_after, and wait_for_lsn() targets. */
static XLogRecPtr
effective_token(void)
{
	return Max(read_after_lsn, waited_floor);
}

/*
 * After promotion (or crash recovery) a token beyond where this node's
 * recovery ended, and beyond anything it has written since, belongs to
 * WAL this node never had: the commit it names is lost here.
 */
static void
check_token_history(XLogRecPtr target)
{
	XLogRecPtr	recovery_end;

	if (XLogRecPtrIsInvalid(target) || lsn_shared == NULL ||
		pg_atomic_read_u32(&lsn_shared->redo_seen) == 0)
		return;
	if (target <= GetXLogInsertRecPtr())
		return;
	recovery_end = GetXLogReplayRecPtr(NULL);
	if (target <= recovery_end)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_PACELC_TOKEN_NOT_IN_HISTORY),
			 errmsg("LSN %X/%X is beyond the history of this server",
					LSN_FORMAT_ARGS(target)),
			 errdetail("Recovery ended at %X/%X and this server has written WAL up to %X/%X; the transaction the token names is not on this server.",
					   LSN_FORMAT_ARGS(recovery_end), LSN_FORMAT_ARGS(GetXLogInsertRecPtr())),
			 errhint("The token was issued by a server that failed over before this one received it; the data it names is lost here.")));
}

/* ---------------------------------------------------------------------
 * Waiting
 * --------------------------------------------------------------------- */

static void
register_waiter(int slot, XLogRecPtr target)
{
	SpinLockAcquire(&lsn_shared->mutex);
	lsn_shared->targets[slot] = target;
	lsn_shared->active[lsn_shared->nactive++] = slot;
	if (target < pg_atomic_read_u64(&lsn_shared->min_target))
		pg_atomic_write_u64(&lsn_shared->min_target, target);
	SpinLockRelease(&lsn_shared->mutex);
	pg_atomic_fetch_add_u32(&lsn_shared->nwaiters, 1);	/* full barrier */
}

static void
unregister_waiter(int slot)
{
	int			i;
	uint64		next = NO_TARGET;

	SpinLockAcquire(&lsn_shared->mutex);
	for (i = 0; i < lsn_shared->nactive; i++)
	{
		if (lsn_shared->active[i] == slot)
		{
			lsn_shared->active[i] = lsn_shared->active[--lsn_shared->nactive];
			i--;
			continue;
		}
		next = Min(next, lsn_shared->targets[lsn_shared->active[i]]);
	}
	lsn_shared->targets[slot] = 0;
	pg_atomic_write_u64(&lsn_shared->min_target, next);
	SpinLockRelease(&lsn_shared->mutex);
	pg_atomic_fetch_sub_u32(&lsn_shared->nwaiters, 1);
}

static void
stop_waiting(int slot, TimestampTz start)
{
	uint64		us;
	uint64		max;

	unregister_waiter(slot);
	us = (uint64) Max(GetCurrentTimestamp() - start, 0);
	pg_atomic_fetch_add_u64(&lsn_shared->wait_us_total, us);
	max = pg_atomic_read_u64(&lsn_shared->wait_us_max);
	while (us > max &&
		   !pg_atomic_compare_exchange_u64(&lsn_shared->wait_us_max, &max, us))
		;
}

/*
 * Is replay stuck on a recovery conflict that this waiter may be causing?
 * A wait that holds a snapshot (wait_for_lsn() in a query) can block a
 * cleanup record, one that holds a lock on a relation (a transaction that
 * read the table before its SET pacelc.read_after) an AccessExclusiveLock
 * the startup process must take; it would then wait up to
 * max_standby_streaming_delay, stalling replay for everyone, and the wait
 * would end in PC010.  Such a waiter gives up at once instead.
 */
static bool
replay_blocked_by_us(void)
{
	uint32		procno = pg_atomic_read_u32(&lsn_shared->startup_procno);
	PGPROC	   *startup;
	uint32		event;

	if (procno == 0)
		return false;
	startup = &ProcGlobal->allProcs[procno - 1];
	event = *((volatile uint32 *) &startup->wait_event_info);
	if (event == WAIT_EVENT_RECOVERY_CONFLICT_SNAPSHOT)
		return ActiveSnapshotSet() || MyProc->xmin != InvalidTransactionId;
	if ((event & 0xFF000000) == PG_WAIT_LOCK)
	{
		LOCK	   *lock = *((LOCK *volatile *) &startup->waitLock);
		LOCKTAG		tag;
		LOCKMODE	mode;

		if (lock == NULL)
			return false;
		/* a racy copy: at worst a wrong answer for one 50 ms round */
		memcpy(&tag, &lock->tag, sizeof(LOCKTAG));
		if (tag.locktag_lockmethodid != DEFAULT_LOCKMETHOD)
			return false;
		for (mode = AccessShareLock; mode <= AccessExclusiveLock; mode++)
			if (pacelc_lock_held(&tag, mode))
				return true;
	}
	return false;
}

/* This backend's wait in progress (slot -1: none). */
static int	waiting_slot = -1;
static TimestampTz waiting_since = 0;

/*
 * Ends this backend's wait, if any: when the wait returns or fails, and
 * (as a before_shmem_exit callback) when the backend exits in the middle
 * of it, e.g. on pg_terminate_backend, where no PG_FINALLY runs.
 */
static void
end_wait(int code, Datum arg)
{
	if (waiting_slot >= 0)
	{
		stop_waiting(waiting_slot, waiting_since);
		waiting_slot = -1;
	}
}

/*
 * Blocks until this standby has replayed target, the node is promoted, or
 * timeout_ms passes (then PC010).  Returns the replay LSN reached.  Cancel,
 * statement_timeout and termination interrupt it like any wait.  On a
 * primary, a target beyond this node's history is an error (PC012).
 */
static XLogRecPtr
wait_for_replay(XLogRecPtr target, int64 timeout_ms)
{
	static bool exit_callback_registered = false;
	XLogRecPtr	replay = current_replay();
	TimestampTz deadline;

	if (!RecoveryInProgress())
	{
		check_token_history(target);
		return replay;
	}
	if (replay >= target)
		return replay;
	if (lsn_shared == NULL)
		elog(ERROR, "pacelc shared memory is not initialized");

	if (!exit_callback_registered)
	{
		before_shmem_exit(end_wait, (Datum) 0);
		exit_callback_registered = true;
	}
	waiting_since = GetCurrentTimestamp();
	deadline = TimestampTzPlusMilliseconds(waiting_since, timeout_ms);
	waiting_slot = PACELC_MY_PROCNO;
	pg_atomic_fetch_add_u64(&lsn_shared->waits, 1);
	register_waiter(waiting_slot, target);

	PG_TRY();
	{
		long		recheck = FALLBACK_RECHECK_MS;

		for (;;)
		{
			long		remaining;
			int			rc;

			replay = current_replay();
			if (replay >= target || !RecoveryInProgress())
				break;
			remaining = (long) ((deadline - GetCurrentTimestamp()) / 1000);
			if (remaining <= 0)
			{
				pg_atomic_fetch_add_u64(&lsn_shared->timeouts, 1);
				ereport(ERROR,
						(errcode(ERRCODE_PACELC_REPLICA_WAIT_TIMEOUT),
						 errmsg("standby did not replay to %X/%X in time",
								LSN_FORMAT_ARGS(target)),
						 errdetail("Waited %lld ms; replay is at %X/%X, %llu bytes behind the target.",
								   (long long) timeout_ms, LSN_FORMAT_ARGS(replay),
								   (unsigned long long) (target - replay)),
						 errhint("Retry later, read from the primary, or raise \"pacelc.wait_timeout\".")));
			}
			if (replay_blocked_by_us())
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("canceling wait for replay to %X/%X due to a conflict with recovery",
								LSN_FORMAT_ARGS(target)),
						 errdetail("Replay is waiting for a snapshot or lock that this transaction holds; replay is at %X/%X.",
								   LSN_FORMAT_ARGS(replay)),
						 errhint("Retry. Set \"pacelc.read_after\" before the statement or BEGIN, so that the wait happens before any snapshot or lock is taken.")));
			rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						   Min(remaining, recheck), PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			/* many long waiters must not keep the CPUs busy re-checking */
			if (rc & WL_TIMEOUT)
				recheck = Min(recheck * 2, FALLBACK_RECHECK_MAX_MS);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_FINALLY();
	{
		end_wait(0, (Datum) 0);
	}
	PG_END_TRY();
	if (!RecoveryInProgress())
		check_token_history(target);
	return replay;
}

/* ---------------------------------------------------------------------
 * read_after and max_staleness, applied before and at snapshots
 * --------------------------------------------------------------------- */

/* Which snapshot raise_stale_snapshot() complains about. */
typedef enum StaleSnapshot
{
	STALE_TRANSACTION,
	STALE_STATEMENT,
	STALE_PORTAL,
} StaleSnapshot;

static void
raise_stale_snapshot(StaleSnapshot which, XLogRecPtr target, Snapshot snap)
{
	XLogRecPtr	proved = snapshot_proved(snap);
	bool		read_after = (target == read_after_lsn);

	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 which == STALE_TRANSACTION ?
			 (read_after ?
			  errmsg("transaction snapshot may be older than \"pacelc.read_after\" %X/%X",
					 LSN_FORMAT_ARGS(target)) :
			  errmsg("transaction snapshot may be older than the LSN waited for %X/%X",
					 LSN_FORMAT_ARGS(target))) :
			 which == STALE_STATEMENT ?
			 (read_after ?
			  errmsg("statement snapshot may be older than \"pacelc.read_after\" %X/%X",
					 LSN_FORMAT_ARGS(target)) :
			  errmsg("statement snapshot may be older than the LSN waited for %X/%X",
					 LSN_FORMAT_ARGS(target))) :
			 (read_after ?
			  errmsg("snapshot of a cursor or portal may be older than \"pacelc.read_after\" %X/%X",
					 LSN_FORMAT_ARGS(target)) :
			  errmsg("snapshot of a cursor or portal may be older than the LSN waited for %X/%X",
					 LSN_FORMAT_ARGS(target))),
			 XLogRecPtrIsInvalid(proved) ?
			 errdetail("The snapshot was taken before this session saw replay reach the token, or was imported.") :
			 errdetail("The snapshot is known to include replay up to %X/%X only.",
					   LSN_FORMAT_ARGS(proved)),
			 errhint("Retry; set \"pacelc.read_after\" (or call pacelc.wait_for_lsn()) before BEGIN or before the statement.")));
}

/*
 * Before a statement's snapshot: wait for the token.  When the
 * transaction snapshot already exists (REPEATABLE READ / SERIALIZABLE after
 * the first statement) and does not include the token: wait (so that a
 * retry works) and raise a serialization failure.
 */
static void
apply_read_after(void)
{
	XLogRecPtr	token = effective_token();

	if (XLogRecPtrIsInvalid(token))
		return;
	if (!RecoveryInProgress())
	{
		check_token_history(token);
		return;
	}
	if (IsolationUsesXactSnapshot() && FirstSnapshotSet)
	{
		Snapshot	xact_snap = GetTransactionSnapshot();

		if (snapshot_includes(xact_snap, token))
			return;
		(void) wait_for_replay(token, wait_timeout_ms);
		raise_stale_snapshot(STALE_TRANSACTION, token, xact_snap);
	}
	(void) wait_for_replay(token, wait_timeout_ms);
	/* the snapshot that comes next will be proved fresh by this witness */
	if (witness_lsn < token && RecoveryInProgress())
		(void) take_witness(token);
}

/*
 * How old, at most, is what this standby shows?  -1 when it cannot tell
 * (no streaming WAL receiver).  Caught up with the primary's last reported
 * WAL end: as old as that report.  Behind it: as old as the last replayed
 * commit.
 */
static int64
staleness_bound_ms(void)
{
	WalRcvState state;
	XLogRecPtr	wal_end;
	TimestampTz wal_end_time;
	TimestampTz basis;
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&WalRcv->mutex);
	state = WalRcv->walRcvState;
	wal_end = WalRcv->latestWalEnd;
	wal_end_time = WalRcv->latestWalEndTime;
	SpinLockRelease(&WalRcv->mutex);

	if (state != WALRCV_STREAMING || wal_end_time == 0)
		return -1;
	if (current_replay() >= wal_end)
		basis = wal_end_time;
	else
		basis = GetLatestXTime();
	if (basis == 0)
		return -1;
	return Max(now - basis, 0) / 1000;
}

/* Checked for every statement, nested ones (functions) included. */
static void
apply_max_staleness(void)
{
	int64		bound;

	if (max_staleness_ms < 0 || !RecoveryInProgress())
		return;
	bound = staleness_bound_ms();
	if (bound < 0)
		ereport(ERROR,
				(errcode(ERRCODE_PACELC_REPLICA_TOO_STALE),
				 errmsg("standby cannot prove its data is at most %d ms old", max_staleness_ms),
				 errdetail("The WAL receiver is not streaming from a primary."),
				 errhint("Read from the primary or another standby.")));
	if (bound > max_staleness_ms)
		ereport(ERROR,
				(errcode(ERRCODE_PACELC_REPLICA_TOO_STALE),
				 errmsg("standby data may be %lld ms old, more than \"pacelc.max_staleness\" (%d ms)",
						(long long) bound, max_staleness_ms),
				 errhint("Read from the primary or another standby.")));
}

/*
 * Utility statements that read no data: ROLLBACK, SET, RESET, DISCARD must
 * work on a stale standby, and BEGIN and SET pacelc.read_after wait in the
 * utility hook.  Every other utility statement (COPY, DECLARE CURSOR,
 * EXPLAIN, ...) is held to read_after and max_staleness here, before the
 * snapshot it will read with.
 */
static bool
utility_needs_no_snapshot(Node *stmt)
{
	switch (nodeTag(stmt))
	{
		case T_TransactionStmt:
		case T_VariableSetStmt:
		case T_VariableShowStmt:
		case T_DiscardStmt:
		case T_ListenStmt:
		case T_UnlistenStmt:
		case T_DeallocateStmt:
		case T_CheckPointStmt:
		case T_LoadStmt:
		case T_ConstraintsSetStmt:
			return true;
		default:
			return false;
	}
}

static void
lsn_post_parse_analyze(ParseState *pstate, Query *query, JumbleState *jstate)
{
	if (prev_post_parse_analyze_hook)
		prev_post_parse_analyze_hook(pstate, query, jstate);
	if (!pacelc_preloaded || IsParallelWorker())
		return;

	if (query->commandType == CMD_UTILITY && utility_needs_no_snapshot(query->utilityStmt))
		return;
	apply_max_staleness();
	apply_read_after();
}

/*
 * Reports the replay LSN the statement's snapshot reflects at most, once
 * at least in every transaction: a value equal to the one reported before
 * is spelled differently (zero-padded low half, the same pg_lsn), because
 * PostgreSQL reports only changed values and a pooler may have handed the
 * earlier report to another client.
 */
static void
report_seen_lsn(void)
{
	XLogRecPtr	replay;
	char		buf[32];

	if (IsInParallelMode() || !RecoveryInProgress())
		return;
	replay = current_replay();
	snprintf(buf, sizeof(buf), "%X/%X", LSN_FORMAT_ARGS(replay));
	if (strcmp(buf, seen_at_xact_end) == 0)
	{
		if ((uint32) replay < 0x10000000)
			snprintf(buf, sizeof(buf), "%X/%08X", LSN_FORMAT_ARGS(replay));
		else
			snprintf(buf, sizeof(buf), "%08X/%X", LSN_FORMAT_ARGS(replay));
	}
	if (strcmp(buf, seen_set) == 0)
		return;
	snprintf(seen_set, sizeof(seen_set), "%s", buf);
	SetConfigOption("pacelc.seen_lsn", buf, PGC_INTERNAL, PGC_S_OVERRIDE);
}

/* Does the plan read a table (rather than only call functions)? */
static bool
plan_reads_relations(PlannedStmt *pstmt)
{
	ListCell   *lc;

	foreach(lc, pstmt->rtable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

		if (rte->rtekind == RTE_RELATION)
			return true;
	}
	return false;
}

/*
 * May this executor start swap its snapshot for a newer one?  Only in READ
 * COMMITTED, for a portal's SELECT that PortalStart is starting right now
 * (so nothing has been read with the snapshot yet); the portal pushed the
 * snapshot and the query descriptor registered it.
 */
static bool
snapshot_replaceable(QueryDesc *queryDesc)
{
	return !IsolationUsesXactSnapshot() &&
		queryDesc->operation == CMD_SELECT &&
		ActivePortal != NULL &&
		ActivePortal->strategy == PORTAL_ONE_SELECT &&
		ActivePortal->queryDesc == NULL &&
		ActiveSnapshotSet() &&
		GetActiveSnapshot() == queryDesc->snapshot;
}

/*
 * The statement's snapshot was taken before replay was known to include
 * the token (an extended-protocol Bind/Execute of a named statement has no
 * parse analysis).  READ COMMITTED: drop the snapshot, wait, take a new
 * one.  Otherwise: wait (so that a retry works), then 40001.
 */
static void
make_snapshot_fresh(QueryDesc *queryDesc, XLogRecPtr token)
{
	Snapshot	fresh;

	if (!snapshot_replaceable(queryDesc))
	{
		(void) wait_for_replay(token, wait_timeout_ms);
		if (snapshot_includes(queryDesc->snapshot, token))
			return;
		raise_stale_snapshot(IsolationUsesXactSnapshot() ? STALE_TRANSACTION :
							 STALE_STATEMENT, token, queryDesc->snapshot);
	}

	/* release it first: a snapshot held while waiting can block replay */
	PopActiveSnapshot();
	UnregisterSnapshot(queryDesc->snapshot);
	queryDesc->snapshot = InvalidSnapshot;
	(void) wait_for_replay(token, wait_timeout_ms);
	if (witness_lsn < token)
		(void) take_witness(token);
	PushActiveSnapshot(GetTransactionSnapshot());
	fresh = GetActiveSnapshot();
	queryDesc->snapshot = RegisterSnapshot(fresh);
	/* taken after the witness, it includes the token; checked all the same */
	if (!snapshot_includes(fresh, token))
		raise_stale_snapshot(STALE_STATEMENT, token, fresh);
}

/* Remembers the stamp of a holdable cursor's snapshot for its FETCHes. */
static void
remember_held_cursor(QueryDesc *queryDesc)
{
	Portal		portal = ActivePortal;

	if (portal == NULL || portal->queryDesc != NULL ||
		!(portal->cursorOptions & CURSOR_OPT_HOLD) || !RecoveryInProgress())
		return;
	held[held_next].portal = portal;
	held[held_next].created = portal->creation_time;
	held[held_next].proved = snapshot_proved(queryDesc->snapshot);
	held_next = (held_next + 1) % NHELD;
}

static void
lsn_ExecutorStart(QueryDesc *queryDesc, int eflags)
{
	if (pacelc_preloaded && !IsParallelWorker())
	{
		XLogRecPtr	token = effective_token();

		apply_max_staleness();
		if (!XLogRecPtrIsInvalid(token))
		{
			if (!RecoveryInProgress())
				check_token_history(token);
			else if (!snapshot_includes(queryDesc->snapshot, token))
				make_snapshot_fresh(queryDesc, token);
		}
		remember_held_cursor(queryDesc);
	}
	if (prev_ExecutorStart)
		prev_ExecutorStart(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
	if (pacelc_preloaded && !IsParallelWorker())
		report_seen_lsn();
}

/*
 * Every run of an executor reads with its query's snapshot: a FETCH from a
 * cursor (SQL or PL/pgSQL), a portal resumed by another protocol Execute.
 * If a token came after executor start and the snapshot cannot be proved
 * to include it, rows may already have been read: 40001.
 */
static void
check_run(QueryDesc *queryDesc)
{
	XLogRecPtr	token = effective_token();

	if (XLogRecPtrIsInvalid(token) || !RecoveryInProgress())
		return;
	if (snapshot_includes(queryDesc->snapshot, token))
		return;
	raise_stale_snapshot(IsolationUsesXactSnapshot() ? STALE_TRANSACTION :
						 STALE_PORTAL, token, queryDesc->snapshot);
}

#if PG_VERSION_NUM >= 180000
static void
lsn_ExecutorRun(QueryDesc *queryDesc, ScanDirection direction, uint64 count)
{
	if (pacelc_preloaded && !IsParallelWorker())
		check_run(queryDesc);
	if (prev_ExecutorRun)
		prev_ExecutorRun(queryDesc, direction, count);
	else
		standard_ExecutorRun(queryDesc, direction, count);
}
#else
static void
lsn_ExecutorRun(QueryDesc *queryDesc, ScanDirection direction, uint64 count,
				bool execute_once)
{
	if (pacelc_preloaded && !IsParallelWorker())
		check_run(queryDesc);
	if (prev_ExecutorRun)
		prev_ExecutorRun(queryDesc, direction, count, execute_once);
	else
		standard_ExecutorRun(queryDesc, direction, count, execute_once);
}
#endif

/*
 * FETCH reads with the snapshot of its cursor, taken when it was declared:
 * it must include the token set since.
 */
static void
check_fetch(FetchStmt *stmt)
{
	XLogRecPtr	token = effective_token();
	Portal		portal;
	XLogRecPtr	stamp = InvalidXLogRecPtr;
	int			i;

	if (stmt->ismove || XLogRecPtrIsInvalid(token) || !RecoveryInProgress() ||
		stmt->portalname == NULL)
		return;
	portal = GetPortalByName(stmt->portalname);
	if (!PortalIsValid(portal))
		return;					/* PerformPortalFetch complains */
	if (portal->queryDesc != NULL)
	{
		if (snapshot_includes(portal->queryDesc->snapshot, token))
			return;
		stamp = snapshot_proved(portal->queryDesc->snapshot);
	}
	else if (portal->holdStore != NULL)
	{
		for (i = 0; i < NHELD; i++)
			if (held[i].portal == portal && held[i].created == portal->creation_time)
				stamp = held[i].proved;
		if (stamp >= token)
			return;
	}
	else
		return;
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("cursor \"%s\" reads a snapshot older than LSN %X/%X",
					stmt->portalname, LSN_FORMAT_ARGS(token)),
			 errdetail("The cursor was declared before replay was known to include the token."),
			 errhint("Declare the cursor again after setting \"pacelc.read_after\".")));
}

/*
 * SET pacelc.read_after and BEGIN wait right away, before any snapshot of
 * the transaction is taken; that is what makes REPEATABLE READ work.
 * FETCH checks its cursor's snapshot; COPY TO reports what it saw.
 */
static void
lsn_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
				   bool readOnlyTree, ProcessUtilityContext context,
				   ParamListInfo params, QueryEnvironment *queryEnv,
				   DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	bool		wait_after = false;
	bool		report_after = false;

	if (IsA(stmt, VariableSetStmt) &&
		((VariableSetStmt *) stmt)->name != NULL &&
		strcmp(((VariableSetStmt *) stmt)->name, "pacelc.read_after") == 0)
		wait_after = true;
	else if (IsA(stmt, TransactionStmt))
	{
		TransactionStmtKind kind = ((TransactionStmt *) stmt)->kind;

		if (kind == TRANS_STMT_BEGIN || kind == TRANS_STMT_START)
			wait_after = true;
		else if (kind == TRANS_STMT_COMMIT_PREPARED)
			commit_prepared_in_xact = true;
	}
	else if (pacelc_preloaded && IsA(stmt, FetchStmt))
		check_fetch((FetchStmt *) stmt);
	else if (IsA(stmt, CopyStmt) && !((CopyStmt *) stmt)->is_from)
	{
		report_after = true;
		/* a COPY whose parse analysis was not now (a prepared one) */
		if (pacelc_preloaded && RecoveryInProgress() && ActiveSnapshotSet() &&
			!XLogRecPtrIsInvalid(effective_token()) &&
			!snapshot_includes(GetActiveSnapshot(), effective_token()))
		{
			(void) wait_for_replay(effective_token(), wait_timeout_ms);
			raise_stale_snapshot(STALE_STATEMENT, effective_token(), GetActiveSnapshot());
		}
	}
	else if (IsA(stmt, DropStmt) &&
			 ((DropStmt *) stmt)->removeType == OBJECT_EXTENSION && pacelc_preloaded)
		pacelc_worker_wake(MyDatabaseId, 1);	/* at commit: the worker sees it is gone, leaves */

	pacelc_next_utility(prev_ProcessUtility, pstmt, queryString, readOnlyTree,
						context, params, queryEnv, dest, qc);

	if (wait_after && pacelc_preloaded)
		apply_read_after();
	if (report_after && pacelc_preloaded)
		report_seen_lsn();
}

/* ---------------------------------------------------------------------
 * Commit: the token
 * --------------------------------------------------------------------- */

static void
lsn_xact_callback(XactEvent event, void *arg)
{
	char		buf[32];

	switch (event)
	{
		case XACT_EVENT_COMMIT:

			/*
			 * Only a commit record of a transaction that changed something is
			 * a token: a read-only transaction may write WAL (pruning, hint
			 * bits with checksums) and XactLastCommitEnd then points at that,
			 * not at a commit.
			 */
			if ((TransactionIdIsValid(GetTopTransactionIdIfAny()) || commit_prepared_in_xact) &&
				XactLastCommitEnd != last_commit_end &&
				!XLogRecPtrIsInvalid(XactLastCommitEnd))
			{
				last_commit_end = XactLastCommitEnd;
				snprintf(buf, sizeof(buf), "%X/%X", LSN_FORMAT_ARGS(last_commit_end));
				SetConfigOption("pacelc.commit_lsn", buf, PGC_INTERNAL, PGC_S_OVERRIDE);
			}
			/* FALLTHROUGH */
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			waited_floor = InvalidXLogRecPtr;
			commit_prepared_in_xact = false;
			snprintf(seen_at_xact_end, sizeof(seen_at_xact_end), "%s", seen_set);
			break;
		default:
			break;
	}
}

/* ---------------------------------------------------------------------
 * SQL functions
 * --------------------------------------------------------------------- */

PG_FUNCTION_INFO_V1(pacelc_commit_lsn);
Datum
pacelc_commit_lsn(PG_FUNCTION_ARGS)
{
	pacelc_check_loaded();
	if (XLogRecPtrIsInvalid(last_commit_end))
		PG_RETURN_NULL();
	PG_RETURN_LSN(last_commit_end);
}

/*
 * The node token: "SYSTEM_IDENTIFIER:LSN", an LSN of this server that
 * covers every commit it has completed so far, named by the server.  On a
 * primary the end of the WAL inserted so far (an end-of-record position,
 * as replay reports them), so it must be taken after the commit it is to
 * cover: in a transaction that has written here it is refused (25001).  On
 * a standby its replay position (for monotonic reads).  On Citus the
 * coordinator cannot pass a worker's ParameterStatus back to the client;
 * pacelc.citus_token(sku) calls this on the SKU's node instead.
 */
PG_FUNCTION_INFO_V1(pacelc_node_token);
Datum
pacelc_node_token(PG_FUNCTION_ARGS)
{
	XLogRecPtr	lsn;
	char		buf[64];

	pacelc_check_loaded();
	if (RecoveryInProgress())
		lsn = current_replay();
	else
	{
		if (TransactionIdIsValid(GetTopTransactionIdIfAny()))
			ereport(ERROR,
					(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
					 errmsg("cannot take a node token in a transaction that has written on this node"),
					 errdetail("The token must cover the commit, which has not happened yet."),
					 errhint("Take the token after COMMIT.")));
		lsn = GetXLogInsertRecPtr();
		/* at a page start, the position after the page header: step back */
		if (XLogSegmentOffset(lsn, wal_segment_size) == SizeOfXLogLongPHD)
			lsn -= SizeOfXLogLongPHD;
		else if (lsn % XLOG_BLCKSZ == SizeOfXLogShortPHD)
			lsn -= SizeOfXLogShortPHD;
		lsn = Max(lsn, last_commit_end);
	}
	snprintf(buf, sizeof(buf), UINT64_FORMAT ":%X/%X", GetSystemIdentifier(),
			 LSN_FORMAT_ARGS(lsn));
	PG_RETURN_TEXT_P(cstring_to_text(buf));
}

PG_FUNCTION_INFO_V1(pacelc_replay_lsn);
Datum
pacelc_replay_lsn(PG_FUNCTION_ARGS)
{
	pacelc_check_loaded();
	PG_RETURN_LSN(current_replay());
}

PG_FUNCTION_INFO_V1(pacelc_wait_for_lsn);
Datum
pacelc_wait_for_lsn(PG_FUNCTION_ARGS)
{
	XLogRecPtr	target;
	Interval   *timeout;
	double		ms;
	XLogRecPtr	replay;

	pacelc_check_loaded();
	pacelc_require_arg(fcinfo, 0, "target");
	pacelc_require_arg(fcinfo, 1, "timeout");
	target = PG_GETARG_LSN(0);
	timeout = PG_GETARG_INTERVAL_P(1);
	/* in double, so that absurd intervals cannot overflow; capped at a day */
	ms = ((double) timeout->month * DAYS_PER_MONTH + timeout->day) * SECS_PER_DAY * 1000.0 +
		(double) timeout->time / 1000.0;
	if (ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must not be negative")));
	replay = wait_for_replay(target, (int64) Min(ms, (double) SECS_PER_DAY * 1000.0));

	/*
	 * The rest of this transaction is held to the target.  A snapshot that
	 * exists already and may not include it is an error when it will be read
	 * with: the transaction snapshot in REPEATABLE READ, the statement's in
	 * READ COMMITTED when the statement reads a table.
	 */
	if (RecoveryInProgress())
	{
		waited_floor = Max(waited_floor, target);
		/* snapshots taken from now on will be proved fresh by it */
		if (witness_lsn < target)
			(void) take_witness(target);
	}
	if (RecoveryInProgress() && ActiveSnapshotSet() &&
		!snapshot_includes(GetActiveSnapshot(), target))
	{
		if (IsolationUsesXactSnapshot())
			raise_stale_snapshot(STALE_TRANSACTION, target, GetActiveSnapshot());
		if (ActivePortal != NULL && ActivePortal->queryDesc != NULL &&
			ActivePortal->queryDesc->plannedstmt != NULL &&
			plan_reads_relations(ActivePortal->queryDesc->plannedstmt))
			raise_stale_snapshot(STALE_STATEMENT, target, GetActiveSnapshot());
	}
	PG_RETURN_LSN(replay);
}

static const char *
walrcv_state_name(void)
{
	WalRcvState state;

	SpinLockAcquire(&WalRcv->mutex);
	state = WalRcv->walRcvState;
	SpinLockRelease(&WalRcv->mutex);
	switch (state)
	{
		case WALRCV_STOPPED:
			return "stopped";
		case WALRCV_STARTING:
			return "starting";
		case WALRCV_STREAMING:
			return "streaming";
		case WALRCV_WAITING:
			return "waiting";
		case WALRCV_RESTARTING:
			return "restarting";
		case WALRCV_STOPPING:
			return "stopping";
	}
	return "unknown";
}

PG_FUNCTION_INFO_V1(pacelc_replica_status);

/* One row: role, positions, lag, and the waiters' statistics. */
Datum
pacelc_replica_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[13];
	bool		nulls[13] = {0};
	bool		standby;
	XLogRecPtr	replay;
	XLogRecPtr	receive = InvalidXLogRecPtr;
	TimestampTz last_commit;
	int64		bound;
	uint64		waits;

	pacelc_check_loaded();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	standby = RecoveryInProgress();
	replay = current_replay();
	values[0] = CStringGetTextDatum(standby ? "standby" : "primary");
	values[1] = LSNGetDatum(replay);
	if (standby)
	{
		receive = GetWalRcvFlushRecPtr(NULL, NULL);
		values[2] = LSNGetDatum(receive);
		values[3] = Int64GetDatum(receive > replay ? (int64) (receive - replay) : 0);
		last_commit = GetLatestXTime();
		if (last_commit != 0)
			values[4] = TimestampTzGetDatum(last_commit);
		else
			nulls[4] = true;
		bound = staleness_bound_ms();
		if (bound >= 0)
			values[5] = Float8GetDatum(bound / 1000.0);
		else
			nulls[5] = true;
		values[6] = CStringGetTextDatum(walrcv_state_name());
	}
	else
	{
		nulls[2] = true;
		values[3] = Int64GetDatum(0);
		nulls[4] = true;
		values[5] = Float8GetDatum(0);
		nulls[6] = true;
	}
	waits = pg_atomic_read_u64(&lsn_shared->waits);
	values[7] = Int32GetDatum((int32) pg_atomic_read_u32(&lsn_shared->nwaiters));
	values[8] = Int64GetDatum((int64) waits);
	values[9] = Int64GetDatum((int64) pg_atomic_read_u64(&lsn_shared->timeouts));
	values[10] = Float8GetDatum(waits == 0 ? 0 :
								pg_atomic_read_u64(&lsn_shared->wait_us_total) / 1000.0 / waits);
	values[11] = Float8GetDatum(pg_atomic_read_u64(&lsn_shared->wait_us_max) / 1000.0);
	values[12] = Float8GetDatum(pg_atomic_read_u64(&lsn_shared->wait_us_total) / 1000.0);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
