/*-------------------------------------------------------------------------
 *
 * pacelc.h
 *		Declarations shared by the pacelc modules.
 *
 * Each concern lives in its own file:
 *		pacelc.c		_PG_init, the "is the library preloaded" guard
 *		shmem.c			shared memory request/startup dispatch
 *		stock.c			escrow stock reservation (SPEC section 1)
 *		session_lsn.c	LSN session tokens for standby reads (section 2)
 *		queue.c			compensation queue helpers (section 3)
 *		worker.c		launcher and per-database background workers
 *
 *-------------------------------------------------------------------------
 */
#ifndef PACELC_H
#define PACELC_H

#include "postgres.h"

#include "fmgr.h"

/* Application-facing SQLSTATEs, class PC (see README "Errors"). */
#define ERRCODE_PACELC_INSUFFICIENT_STOCK		MAKE_SQLSTATE('P','C','0','0','1')
#define ERRCODE_PACELC_UNKNOWN_SKU				MAKE_SQLSTATE('P','C','0','0','2')
#define ERRCODE_PACELC_RESERVATION_NOT_ACTIVE	MAKE_SQLSTATE('P','C','0','0','3')
#define ERRCODE_PACELC_REPLICA_WAIT_TIMEOUT		MAKE_SQLSTATE('P','C','0','1','0')
#define ERRCODE_PACELC_REPLICA_TOO_STALE		MAKE_SQLSTATE('P','C','0','1','1')
#define ERRCODE_PACELC_TOKEN_NOT_IN_HISTORY	MAKE_SQLSTATE('P','C','0','1','2')

/*
 * Version guards.  Built and tested on PostgreSQL 15; these are the known
 * API changes of 16 and 17 the code meets.
 */
#if PG_VERSION_NUM >= 160000
#define pacelc_proc_aclcheck(proc, role, mode) \
	object_aclcheck(ProcedureRelationId, (proc), (role), (mode))
#else
#define pacelc_proc_aclcheck(proc, role, mode) \
	pg_proc_aclcheck((proc), (role), (mode))
#endif
#if PG_VERSION_NUM >= 170000
#define PACELC_MY_PROCNO	GetNumberFromPGProc(MyProc)
#else
#define PACELC_MY_PROCNO	(MyProc->pgprocno)
#endif

/* pacelc.c */
extern bool pacelc_preloaded;
extern void pacelc_check_loaded(void);
extern void pacelc_require_arg(FunctionCallInfo fcinfo, int argno, const char *name);
#define PACELC_KEY_MAXLEN	255
extern void pacelc_check_key(text *key);
extern struct _SPI_plan *pacelc_keep_plan(struct _SPI_plan **plan, const char *sql,
										  int nargs, Oid *argtypes);

/* shmem.c: each module reports its size and initialises its part */
extern void pacelc_shmem_install_hooks(void);

/* stock.c */
extern void stock_init(void);
extern Size stock_shmem_size(void);
extern void stock_shmem_startup(void);
extern void stock_shmem_request(void);

/* session_lsn.c */
extern void session_lsn_init(void);
extern Size session_lsn_shmem_size(void);
extern void session_lsn_shmem_startup(void);
extern void session_lsn_shmem_request(void);

/* queue.c */
typedef struct PacelcWorkerSlot
{
	bool		in_use;
	Oid			dbid;
	int			pid;
	struct PGPROC *proc;
	int64		next_wakeup;	/* TimestampTz the worker sleeps until */
} PacelcWorkerSlot;

extern void queue_init(void);
extern bool queue_claim_slot(Oid dbid);
extern void queue_release_slot(int code, Datum arg);
extern bool queue_database_served(Oid dbid);
extern void queue_set_launcher(struct PGPROC *proc);
extern bool queue_take_rescan(void);
extern void queue_set_next_wakeup(int64 when);
extern void queue_wake_worker_by(int64 when);
extern void queue_set_handler_role(Oid role);
extern Size queue_shmem_size(void);
extern void queue_shmem_startup(void);
extern void queue_shmem_request(void);

/* worker.c */
extern void worker_init(void);

#endif							/* PACELC_H */
