/*-------------------------------------------------------------------------
 *
 * session_lsn.c
 *		Session LSN tokens: read-your-writes and monotonic reads on hot
 *		standbys (SPEC section 2).
 *
 * Writers get their token for free: at commit, the end of the commit record
 * is published in the reported GUC pacelc.commit_lsn, which PostgreSQL sends
 * to the client in a ParameterStatus message before ReadyForQuery.  Only
 * transactions that wrote a commit record pay anything (one GUC set).
 *
 * Readers present the token on a standby (wait_for_lsn(), or the GUC
 * pacelc.read_after, which makes statements wait before their snapshot).
 * Waiting must wake when replay passes the target, not poll.  PostgreSQL 15
 * has no hook or condition variable for "replay advanced", so this module
 * wraps the redo functions of the built-in resource managers in the
 * (preloaded) startup process: after a commit/abort, standby or xlog record
 * is replayed, the wrapper publishes its end LSN and sets the latch of every
 * waiter whose target it reached.  That costs the startup process one atomic
 * read per such record while nobody waits, and waiters wake within
 * microseconds of the record that satisfies them.  Waiters also re-check
 * every 50 ms, which bounds the reaction to a promotion and to tokens that
 * point into the middle of a transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/parallel.h"
#include "access/rmgr.h"
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
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/pg_lsn.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "pacelc.h"

#define FALLBACK_RECHECK_MS 50

typedef struct LsnShared
{
	pg_atomic_uint64 replayed_hint; /* end of the last record whose redo ended */
	pg_atomic_uint32 nwaiters;
	pg_atomic_uint64 waits;
	pg_atomic_uint64 timeouts;
	pg_atomic_uint64 wait_us_total;
	pg_atomic_uint64 wait_us_max;
	pg_atomic_uint32 startup_procno;	/* the startup process's PGPROC + 1 */
	int			nslots;
	pg_atomic_uint64 targets[FLEXIBLE_ARRAY_MEMBER];	/* per PGPROC; 0 = idle */
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
static XLogRecPtr observed_replay = InvalidXLogRecPtr;	/* a past replay LSN */
static XLogRecPtr reported_seen = InvalidXLogRecPtr;
static bool xact_stamped = false;
static XLogRecPtr xact_snapshot_lsn = InvalidXLogRecPtr;
static TimestampTz staleness_checked_for = 0;

/* Original redo functions of the built-in resource managers */
static void (*orig_redo[RM_MAX_BUILTIN_ID + 1]) (XLogReaderState *record);

static post_parse_analyze_hook_type prev_post_parse_analyze_hook = NULL;
static ExecutorStart_hook_type prev_ExecutorStart = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

static void lsn_xact_callback(XactEvent event, void *arg);
static void lsn_post_parse_analyze(ParseState *pstate, Query *query,
								   JumbleState *jstate);
static void lsn_ExecutorStart(QueryDesc *queryDesc, int eflags);
static void lsn_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
							   bool readOnlyTree, ProcessUtilityContext context,
							   ParamListInfo params, QueryEnvironment *queryEnv,
							   DestReceiver *dest, QueryCompletion *qc);
static void pacelc_redo(XLogReaderState *record);

/* ---------------------------------------------------------------------
 * Set-up
 * --------------------------------------------------------------------- */

static bool
check_read_after(char **newval, void **extra, GucSource source)
{
	bool		have_error = false;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	(void) pg_lsn_in_internal(*newval, &have_error);
	if (have_error)
	{
		GUC_check_errdetail("\"%s\" is not an LSN such as 0/16B3748.", *newval);
		return false;
	}
	return true;
}

static void
assign_read_after(const char *newval, void *extra)
{
	bool		have_error = false;

	if (newval == NULL || newval[0] == '\0')
		read_after_lsn = InvalidXLogRecPtr;
	else
		read_after_lsn = pg_lsn_in_internal(newval, &have_error);
}

/*
 * Wraps the redo function of every built-in resource manager, so the
 * startup process can wake waiters right after replaying a record.
 */
static void
wrap_redo_functions(void)
{
	int			rmid;

	for (rmid = 0; rmid <= RM_MAX_BUILTIN_ID; rmid++)
	{
		if (RmgrTable[rmid].rm_name == NULL || RmgrTable[rmid].rm_redo == NULL)
			continue;
		orig_redo[rmid] = RmgrTable[rmid].rm_redo;
		RmgrTable[rmid].rm_redo = pacelc_redo;
	}
}

void
session_lsn_init(void)
{
	DefineCustomStringVariable("pacelc.commit_lsn",
							   "End LSN of this session's last commit (the read-your-writes token).",
							   "Reported to the client after each commit.",
							   &commit_lsn_guc, "",
							   PGC_INTERNAL,
							   GUC_REPORT | GUC_NOT_IN_SAMPLE | GUC_DISALLOW_IN_FILE,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("pacelc.seen_lsn",
							   "On a standby, the replay LSN the last statement's snapshot reflects at most.",
							   "Reported to the client; keep max(commit_lsn, seen_lsn) as a causal token.",
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
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = lsn_ProcessUtility;

	wrap_redo_functions();
}

static int
lsn_nslots(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
}

Size
session_lsn_shmem_size(void)
{
	return add_size(offsetof(LsnShared, targets),
					mul_size(lsn_nslots(), sizeof(pg_atomic_uint64)));
}

void
session_lsn_shmem_request(void)
{
}

void
session_lsn_shmem_startup(void)
{
	bool		found;
	int			i;

	lsn_shared = ShmemInitStruct("pacelc session lsn", session_lsn_shmem_size(), &found);
	if (!found)
	{
		pg_atomic_init_u64(&lsn_shared->replayed_hint, 0);
		pg_atomic_init_u32(&lsn_shared->nwaiters, 0);
		pg_atomic_init_u64(&lsn_shared->waits, 0);
		pg_atomic_init_u64(&lsn_shared->timeouts, 0);
		pg_atomic_init_u64(&lsn_shared->wait_us_total, 0);
		pg_atomic_init_u64(&lsn_shared->wait_us_max, 0);
		pg_atomic_init_u32(&lsn_shared->startup_procno, 0);
		lsn_shared->nslots = lsn_nslots();
		for (i = 0; i < lsn_shared->nslots; i++)
			pg_atomic_init_u64(&lsn_shared->targets[i], 0);
	}
}

/* ---------------------------------------------------------------------
 * The startup process side
 * --------------------------------------------------------------------- */

/*
 * Publishes how far redo got and wakes the waiters that are satisfied.
 * Runs in the startup process: atomics and SetLatch only, nothing that can
 * fail.
 */
static void
wake_waiters(XLogRecPtr end)
{
	int			i;

	pg_atomic_write_u64(&lsn_shared->replayed_hint, end);
	pg_memory_barrier();
	if (pg_atomic_read_u32(&lsn_shared->nwaiters) == 0)
		return;
	for (i = 0; i < lsn_shared->nslots; i++)
	{
		uint64		target = pg_atomic_read_u64(&lsn_shared->targets[i]);

		if (target != 0 && target <= end)
			SetLatch(&ProcGlobal->allProcs[i].procLatch);
	}
}

static void
pacelc_redo(XLogReaderState *record)
{
	static bool announced = false;
	RmgrId		rmid = XLogRecGetRmid(record);

	/* waiters look at what replay is blocked on (see replay_blocked_by_us) */
	if (!announced && lsn_shared != NULL)
	{
		pg_atomic_write_u32(&lsn_shared->startup_procno, PACELC_MY_PROCNO + 1);
		announced = true;
	}

	orig_redo[rmid] (record);

	/* records after which new data can become visible, or that end a stretch */
	if (lsn_shared != NULL &&
		(rmid == RM_XACT_ID || rmid == RM_STANDBY_ID || rmid == RM_XLOG_ID))
		wake_waiters(record->EndRecPtr);
}

/* ---------------------------------------------------------------------
 * Waiting
 * --------------------------------------------------------------------- */

/* What this node has applied: replay on a standby, insert on a primary. */
static XLogRecPtr
current_replay(void)
{
	XLogRecPtr	replay;
	XLogRecPtr	hint;

	if (!RecoveryInProgress())
		return GetXLogInsertRecPtr();
	replay = GetXLogReplayRecPtr(NULL);
	hint = lsn_shared ? (XLogRecPtr) pg_atomic_read_u64(&lsn_shared->replayed_hint) : 0;
	replay = Max(replay, hint);
	if (replay > observed_replay)
		observed_replay = replay;
	return replay;
}

static void
stop_waiting(int slot, TimestampTz start)
{
	uint64		us;
	uint64		max;

	pg_atomic_write_u64(&lsn_shared->targets[slot], 0);
	pg_atomic_fetch_sub_u32(&lsn_shared->nwaiters, 1);
	us = (uint64) Max(GetCurrentTimestamp() - start, 0);
	pg_atomic_fetch_add_u64(&lsn_shared->wait_us_total, us);
	max = pg_atomic_read_u64(&lsn_shared->wait_us_max);
	while (us > max &&
		   !pg_atomic_compare_exchange_u64(&lsn_shared->wait_us_max, &max, us))
		;
}

/*
 * Is replay stuck on a recovery conflict that this waiter may be causing?
 * A wait that holds a snapshot or table locks (wait_for_lsn() in a query, a
 * statement that waits after its parse analysis) can block the very replay
 * it waits for: a cleanup record conflicts with the snapshot, an
 * AccessExclusiveLock with the locks, and the startup process waits up to
 * max_standby_streaming_delay for them.  Waiting on would stall replay for
 * everyone and end in PC010, so such a waiter gives up at once instead.
 */
static bool
replay_blocked_by_us(void)
{
	uint32		procno = pg_atomic_read_u32(&lsn_shared->startup_procno);
	uint32		event;

	if (procno == 0)
		return false;
	if (!ActiveSnapshotSet() && MyProc->xmin == InvalidTransactionId)
		return false;
	event = *((volatile uint32 *) &ProcGlobal->allProcs[procno - 1].wait_event_info);
	return event == WAIT_EVENT_RECOVERY_CONFLICT_SNAPSHOT ||
		(event & 0xFF000000) == PG_WAIT_LOCK;
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
 * statement_timeout and termination interrupt it like any wait.
 */
static XLogRecPtr
wait_for_replay(XLogRecPtr target, int64 timeout_ms)
{
	static bool exit_callback_registered = false;
	XLogRecPtr	replay = current_replay();
	TimestampTz deadline;

	if (replay >= target || !RecoveryInProgress())
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
	pg_atomic_write_u64(&lsn_shared->targets[waiting_slot], target);
	pg_atomic_fetch_add_u32(&lsn_shared->nwaiters, 1);	/* full barrier */

	PG_TRY();
	{
		for (;;)
		{
			long		remaining;

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
						 errhint("Retry later, read from the primary, or raise pacelc.wait_timeout.")));
			}
			if (replay_blocked_by_us())
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("canceling wait for replay to %X/%X due to a conflict with recovery",
								LSN_FORMAT_ARGS(target)),
						 errdetail("Replay is waiting for snapshots or locks like the ones this statement holds while it waits; replay is at %X/%X.",
								   LSN_FORMAT_ARGS(replay)),
						 errhint("Retry. Set pacelc.read_after before the statement or BEGIN, so that the wait happens before any snapshot is taken.")));
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 Min(remaining, FALLBACK_RECHECK_MS), PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_FINALLY();
	{
		end_wait(0, (Datum) 0);
	}
	PG_END_TRY();
	return replay;
}

/* ---------------------------------------------------------------------
 * read_after and max_staleness, applied before snapshots
 * --------------------------------------------------------------------- */

/*
 * In REPEATABLE READ / SERIALIZABLE the transaction snapshot is fixed by the
 * first statement.  Remember a replay LSN known to have been reached before
 * it was taken (any earlier observation), to judge later tokens by.
 */
static void
stamp_transaction(void)
{
	if (!xact_stamped && FirstSnapshotSet && IsolationUsesXactSnapshot())
	{
		xact_snapshot_lsn = observed_replay;
		xact_stamped = true;
	}
}

/*
 * Makes sure the snapshot of what runs next is not older than read_after.
 * Before a snapshot is taken: wait.  When the transaction snapshot already
 * exists and may predate the token: wait (so a retry works) and raise a
 * serialization failure instead of reading stale data.
 */
static void
apply_read_after(void)
{
	if (XLogRecPtrIsInvalid(read_after_lsn) || !RecoveryInProgress())
		return;
	stamp_transaction();
	if (xact_stamped)
	{
		if (xact_snapshot_lsn >= read_after_lsn)
			return;
		(void) wait_for_replay(read_after_lsn, wait_timeout_ms);
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("transaction snapshot is older than pacelc.read_after"),
				 errdetail("The snapshot was taken at replay position %X/%X or later, before the token %X/%X was known to be replayed.",
						   LSN_FORMAT_ARGS(xact_snapshot_lsn), LSN_FORMAT_ARGS(read_after_lsn)),
				 errhint("Retry the transaction; set pacelc.read_after before BEGIN.")));
	}
	if (observed_replay < read_after_lsn)
		(void) wait_for_replay(read_after_lsn, wait_timeout_ms);
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

static void
apply_max_staleness(void)
{
	int64		bound;
	TimestampTz stmt = GetCurrentStatementStartTimestamp();

	if (max_staleness_ms < 0 || !RecoveryInProgress() || staleness_checked_for == stmt)
		return;
	staleness_checked_for = stmt;
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
				 errmsg("standby data may be %lld ms old, more than pacelc.max_staleness (%d ms)",
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
	/* before anything below observes a replay position newer than the snapshot */
	stamp_transaction();
	apply_max_staleness();
	apply_read_after();
}

/* Reports the replay LSN the statement's snapshot reflects at most. */
static void
report_seen_lsn(void)
{
	XLogRecPtr	replay;
	char		buf[32];

	if (IsInParallelMode() || !RecoveryInProgress())
		return;
	replay = current_replay();
	if (replay == reported_seen)
		return;
	reported_seen = replay;
	snprintf(buf, sizeof(buf), "%X/%X", LSN_FORMAT_ARGS(replay));
	SetConfigOption("pacelc.seen_lsn", buf, PGC_INTERNAL, PGC_S_OVERRIDE);
}

static void
lsn_ExecutorStart(QueryDesc *queryDesc, int eflags)
{
	if (pacelc_preloaded && !IsParallelWorker())
	{
		/* a re-executed prepared statement had no parse analysis */
		stamp_transaction();
		apply_max_staleness();
		if (!XLogRecPtrIsInvalid(read_after_lsn) && RecoveryInProgress() &&
			observed_replay < read_after_lsn)
		{
			(void) wait_for_replay(read_after_lsn, wait_timeout_ms);
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("statement snapshot may be older than pacelc.read_after"),
					 errhint("Retry the statement; it will see the token's data now.")));
		}
	}
	if (prev_ExecutorStart)
		prev_ExecutorStart(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
	if (pacelc_preloaded && !IsParallelWorker())
		report_seen_lsn();
}

/*
 * SET pacelc.read_after and BEGIN wait right away, before any snapshot of
 * the transaction is taken; that is what makes REPEATABLE READ work.
 */
static void
lsn_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
				   bool readOnlyTree, ProcessUtilityContext context,
				   ParamListInfo params, QueryEnvironment *queryEnv,
				   DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	bool		wait_after = false;

	if (IsA(stmt, VariableSetStmt) &&
		((VariableSetStmt *) stmt)->name != NULL &&
		strcmp(((VariableSetStmt *) stmt)->name, "pacelc.read_after") == 0)
		wait_after = true;
	else if (IsA(stmt, TransactionStmt) &&
			 (((TransactionStmt *) stmt)->kind == TRANS_STMT_BEGIN ||
			  ((TransactionStmt *) stmt)->kind == TRANS_STMT_START))
		wait_after = true;
	else if (IsA(stmt, DropStmt) &&
			 ((DropStmt *) stmt)->removeType == OBJECT_EXTENSION && pacelc_preloaded)
		queue_wake_worker_by(1);	/* at commit: the worker sees it is gone, leaves */

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);

	if (wait_after && pacelc_preloaded)
		apply_read_after();
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
			xact_stamped = false;
			if (XactLastCommitEnd != last_commit_end &&
				!XLogRecPtrIsInvalid(XactLastCommitEnd))
			{
				last_commit_end = XactLastCommitEnd;
				snprintf(buf, sizeof(buf), "%X/%X", LSN_FORMAT_ARGS(last_commit_end));
				SetConfigOption("pacelc.commit_lsn", buf, PGC_INTERNAL, PGC_S_OVERRIDE);
			}
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			xact_stamped = false;
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
	PG_RETURN_LSN(wait_for_replay(target, (int64) Min(ms, (double) SECS_PER_DAY * 1000.0)));
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
