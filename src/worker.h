/*-------------------------------------------------------------------------
 *
 * worker.h
 *		The launcher, the per-database workers and their shared registry.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PACELC_WORKER_H
#define PACELC_WORKER_H

#include "datatype/timestamp.h"

extern void pacelc_worker_init(void);
extern Size pacelc_worker_shmem_size(void);
extern void pacelc_worker_shmem_startup(void);
extern void pacelc_want_worker(Oid dbid, bool retry_now);

/*
 * What this transaction asks of the workers; it happens at commit (never
 * for a transaction that aborts).  pacelc_worker_wake(): wake a worker of
 * the database (by 0: at once; else only if that is earlier than it planned
 * to wake up), pacelc_worker_wake_queue() for work in one queue;
 * pacelc_worker_rescan(): and have every worker scan its queues
 * from the start once; pacelc_worker_request(): ask the launcher for a
 * worker (CREATE EXTENSION); pacelc_worker_note_enqueue(): enqueue()
 * announces itself before it computes run_at (the scan floors, worker.c).
 */
extern void pacelc_worker_wake(Oid dbid, TimestampTz by);
extern void pacelc_worker_wake_queue(Oid dbid, TimestampTz by, const char *queue);
extern void pacelc_worker_rescan(Oid dbid);
extern void pacelc_worker_request(void);
extern void pacelc_worker_note_enqueue(void);

/*
 * The time before which no held hold of the database expires, as far as
 * its workers know (DT_NOBEGIN: nothing known): expire_holds() starts its
 * scan there.
 */
extern TimestampTz pacelc_worker_expiry_floor(Oid dbid);

#endif							/* PACELC_WORKER_H */
