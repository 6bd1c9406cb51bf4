/*-------------------------------------------------------------------------
 *
 * replay_hook.c
 *		Runs a callback in the startup process after each replayed WAL
 *		record, by wrapping the redo functions of the built-in resource
 *		managers.
 *
 * Why a wrapper and not a hook: a standby's waiters for "replay reached LSN
 * X" (session_lsn.c) must be woken when replay passes X, and PostgreSQL 15
 * to 18 give an extension no way to learn that replay advanced:
 *
 *	- the redo loop (ApplyWalRecord in xlogrecovery.c) calls no hook;
 *	- a custom resource manager (RegisterCustomRmgr, 15+) sees only its own
 *	  records, and a primary writes none of them for ordinary commits;
 *	- the condition variable WalSndCtl->wal_replay_cv (16+) is private to
 *	  the WAL senders (replication/walsender_private.h) and broadcast only
 *	  when cascading replication is allowed (max_wal_senders > 0);
 *	- the waiting facility proposed for core (pg_wal_replay_wait(), then
 *	  WAIT FOR LSN with access/xlogwait.h, WaitForLSN()) was reverted
 *	  before 17 and before 18; PostgreSQL 18.6's server has neither
 *	  (checked: no xlogwait.h among its headers, no WaitForLSN or
 *	  pg_wal_replay_wait in its binary).  It is in 19devel: on a version
 *	  that ships it, pacelc should wait with WaitForLSN() and leave redo
 *	  alone (not done yet: no released server to build and test it on).
 *
 * RmgrTable[] is writable (PGDLLIMPORT, not const) on 15 to 18 and the
 * entries are plain function pointers, so _PG_init, in the postmaster,
 * replaces rm_redo of every built-in resource manager with
 * replay_hook_redo(), which calls the original and then the callback.  The
 * startup process inherits the table.  Custom resource managers registered
 * later are not wrapped; their records are rare and the next built-in
 * record (or the recheck below) catches up.
 *
 * Cost per replayed record: one more indirect call, and whatever the
 * callback does; session_lsn.c's does one atomic write, a memory barrier
 * and one atomic read and compare while no waiter's target is due, a
 * spinlock and a walk of the waiters (not of all backends) when one is.
 * Measured (README "Replay benchmark", test/bench/replay_bench.sh): replay
 * of 100,000 commits took the startup process 93 ms of CPU through the
 * wrappers and 94 ms without pacelc loaded (medians of 5 rounds), and 92 ms
 * with 100 waiters: below what this machine can resolve.
 *
 * Fallback: without the wrappers (pacelc_replay_hook_install() returns
 * false when it finds them installed already, and a future server whose
 * RmgrTable is read-only would need this file left out), nothing breaks:
 * waiters re-check replay with GetXLogReplayRecPtr() on their own, every
 * 50 ms backing off to 500 ms (session_lsn.c, FALLBACK_RECHECK_MS), so a
 * wait reacts later but still ends; the checks that need to know the
 * startup process (a token beyond this server's history, replay blocked by
 * the waiter itself) are skipped, and PostgreSQL's own recovery-conflict
 * handling applies instead.
 *
 * This file calls no other pacelc file.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/rmgr.h"
#include "access/xlog_internal.h"
#include "access/xlogreader.h"

#include "replay_hook.h"

/* Original redo functions of the built-in resource managers */
static void (*orig_redo[RM_MAX_BUILTIN_ID + 1]) (XLogReaderState *record);

static pacelc_replay_start_cb start_cb = NULL;
static pacelc_replay_record_cb record_cb = NULL;

static void
replay_hook_redo(XLogReaderState *record)
{
	static bool started = false;

	if (unlikely(!started))
		started = start_cb();

	orig_redo[XLogRecGetRmid(record)] (record);

	record_cb(record);
}

/*
 * Wraps rm_redo of every built-in resource manager.  Called once, from
 * _PG_init in the postmaster.  Returns false (and wraps nothing) if it was
 * already called.
 */
bool
pacelc_replay_hook_install(pacelc_replay_start_cb start,
						   pacelc_replay_record_cb after_record)
{
	int			rmid;

	if (record_cb != NULL)
		return false;
	for (rmid = 0; rmid <= RM_MAX_BUILTIN_ID; rmid++)
		if (RmgrTable[rmid].rm_redo == replay_hook_redo)
			return false;

	start_cb = start;
	record_cb = after_record;
	for (rmid = 0; rmid <= RM_MAX_BUILTIN_ID; rmid++)
	{
		if (RmgrTable[rmid].rm_name == NULL || RmgrTable[rmid].rm_redo == NULL)
			continue;
		orig_redo[rmid] = RmgrTable[rmid].rm_redo;
		RmgrTable[rmid].rm_redo = replay_hook_redo;
	}
	return true;
}
