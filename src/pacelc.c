/*-------------------------------------------------------------------------
 *
 * pacelc.c
 *		Library entry point: _PG_init and the shared memory hooks.
 *
 * pacelc keeps escrow counters and waiter state in shared memory and runs
 * background workers, so it only works when loaded through
 * shared_preload_libraries.  Loaded any other way _PG_init does nothing at
 * all, and every entry point refuses (support.c, pacelc_check_loaded).
 *
 * Layout: one concern per file, one header per file, and calls between
 * files go one way only (an arrow reads "calls"; no file calls back up):
 *
 *		pacelc.c ----------> every module's init and shared memory parts
 *		stock.c -----------> escrow.c, reservation_rows.c, worker.c,
 *							 privilege.c, support.c
 *		reservation_rows.c > fastpath.c, privilege.c
 *		escrow.c ----------> prepared.c, support.c
 *		prepared.c --------> support.c
 *		session_lsn.c -----> replay_hook.c, worker.c, support.c
 *		queue.c -----------> worker.c, fastpath.c, privilege.c, support.c
 *		worker.c ----------> privilege.c, support.c
 *		privilege.c -------> support.c
 *		replay_hook.c -----> nothing
 *		fastpath.c --------> support.c
 *		support.c ---------> nothing
 *
 * Shared memory, as pg_stat_statements does it: the request hook asks for
 * every module's size and LWLock tranches, the startup hook lets each
 * module attach its part under AddinShmemInitLock.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"

#include "escrow.h"
#include "privilege.h"
#include "session_lsn.h"
#include "support.h"
#include "worker.h"

PG_MODULE_MAGIC;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void pacelc_shmem_request(void);
static void pacelc_shmem_startup(void);

void		_PG_init(void);

void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;

	pacelc_preloaded = true;

	pacelc_stock_init();
	pacelc_session_lsn_init();
	pacelc_worker_init();
	pacelc_privilege_init();

	/* every pacelc.* setting is defined above: refuse misspelt ones */
	MarkGUCPrefixReserved("pacelc");

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = pacelc_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = pacelc_shmem_startup;
}

/* Asks for the shared memory and LWLock tranches of every module. */
static void
pacelc_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	RequestAddinShmemSpace(add_size(pacelc_stock_shmem_size(),
									add_size(pacelc_session_lsn_shmem_size(),
											 pacelc_worker_shmem_size())));
	pacelc_stock_shmem_request();
}

/* Creates or attaches each module's part of shared memory. */
static void
pacelc_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	pacelc_stock_shmem_startup();
	pacelc_session_lsn_shmem_startup();
	pacelc_worker_shmem_startup();
	LWLockRelease(AddinShmemInitLock);
}
