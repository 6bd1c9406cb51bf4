/*-------------------------------------------------------------------------
 *
 * worker.h
 *		The launcher, the per-database workers and their shared registry.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PACELC_WORKER_H
#define PACELC_WORKER_H

extern void pacelc_worker_init(void);
extern Size pacelc_worker_shmem_size(void);
extern void pacelc_worker_shmem_startup(void);
extern void pacelc_want_worker(Oid dbid, bool retry_now);
extern void pacelc_wake_database(Oid dbid, int64 by);

#endif							/* PACELC_WORKER_H */
