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
 * On Citus, each node's reservation ids start at its node group shifted by
 * this many bits (pacelc.citus_setup()), so ids are unique across nodes.
 */
#define PACELC_NODE_ID_SHIFT	48

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

/* privilege.c: acting for the extension's owner on a caller's behalf */
#include "datatype/timestamp.h"
#include "utils/timestamp.h"
extern void pacelc_privilege_init(void);
extern Datum pacelc_run_as_owner(FunctionCallInfo fcinfo, PGFunction body);
extern Oid	pacelc_caller(void);
extern bool pacelc_schema_03(void);
extern void pacelc_refuse_old_definer(void);
extern bool pacelc_is_admin(Oid role);
extern bool pacelc_acts_for(Oid role, Oid owner);
extern void pacelc_require_internal(FunctionCallInfo fcinfo);
extern TimestampTz pacelc_future_timestamp(Interval *iv, const char *name,
										   bool allow_zero, int max_years);

/*
 * Defines the SQL-callable C function "name" that runs "body" as the
 * extension's owner (see privilege.c).
 */
#define PACELC_OWNER_ENTRY(name, body) \
	PG_FUNCTION_INFO_V1(name); \
	Datum \
	name(PG_FUNCTION_ARGS) \
	{ \
		return pacelc_run_as_owner(fcinfo, body); \
	}

/* shmem.c: each module reports its size and initialises its part */
extern void pacelc_shmem_install_hooks(void);

/* stock.c */
extern void pacelc_stock_init(void);
extern Size pacelc_stock_shmem_size(void);
extern void pacelc_stock_shmem_startup(void);
extern void pacelc_stock_shmem_request(void);

/* session_lsn.c */
extern void pacelc_session_lsn_init(void);
extern Size pacelc_session_lsn_shmem_size(void);
extern void pacelc_session_lsn_shmem_startup(void);
extern void pacelc_session_lsn_shmem_request(void);

/* queue.c */
extern void pacelc_queue_init(void);
extern void pacelc_queue_wake_worker_by(int64 when);
extern void pacelc_queue_set_handler_role(Oid role);
extern bool pacelc_queue_allowed(Oid caller, Oid owner, struct varlena *queue, bool consume);
extern void pacelc_queue_denied(struct varlena *queue, const char *what);

/* worker.c: the launcher, the database workers and their shared registry */
extern void pacelc_worker_init(void);
extern Size pacelc_worker_shmem_size(void);
extern void pacelc_worker_shmem_startup(void);
extern void pacelc_want_worker(Oid dbid, bool retry_now);
extern void pacelc_wake_database(Oid dbid, int64 by);

#endif							/* PACELC_H */
