/*-------------------------------------------------------------------------
 *
 * shmem.c
 *		The one place that talks to PostgreSQL's shared memory hooks.
 *
 * PostgreSQL 15 wants shared memory and LWLock tranches requested from
 * shmem_request_hook and attached from shmem_startup_hook.  Each module
 * reports its own size and initialises its own segment; this file only
 * dispatches, so the modules stay independent of one another.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

#include "pacelc.h"

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
pacelc_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	RequestAddinShmemSpace(add_size(pacelc_stock_shmem_size(),
									add_size(pacelc_session_lsn_shmem_size(),
											 pacelc_worker_shmem_size())));
	pacelc_stock_shmem_request();
	pacelc_session_lsn_shmem_request();
}

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

void
pacelc_shmem_install_hooks(void)
{
#if PG_VERSION_NUM >= 150000
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = pacelc_shmem_request;
#else
#error "pacelc requires PostgreSQL 15 or later"
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = pacelc_shmem_startup;
}
