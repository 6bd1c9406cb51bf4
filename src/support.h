/*-------------------------------------------------------------------------
 *
 * support.h
 *		Leaf helpers every pacelc module uses: the preload guard, argument
 *		checks, the extension's SQLSTATEs, kept SPI plans, the internal
 *		subtransaction runner and version guards.
 *
 * support.c calls no other pacelc file (see README "Layout").
 *
 *-------------------------------------------------------------------------
 */
#ifndef PACELC_SUPPORT_H
#define PACELC_SUPPORT_H

#include "access/genam.h"
#include "fmgr.h"
#include "executor/spi.h"
#include "tcop/utility.h"

/* Application-facing SQLSTATEs, class PC (see README "Errors"). */
#define ERRCODE_PACELC_INSUFFICIENT_STOCK		MAKE_SQLSTATE('P','C','0','0','1')
#define ERRCODE_PACELC_UNKNOWN_SKU				MAKE_SQLSTATE('P','C','0','0','2')
#define ERRCODE_PACELC_RESERVATION_NOT_ACTIVE	MAKE_SQLSTATE('P','C','0','0','3')
#define ERRCODE_PACELC_REPLICA_WAIT_TIMEOUT		MAKE_SQLSTATE('P','C','0','1','0')
#define ERRCODE_PACELC_REPLICA_TOO_STALE		MAKE_SQLSTATE('P','C','0','1','1')
#define ERRCODE_PACELC_TOKEN_NOT_IN_HISTORY		MAKE_SQLSTATE('P','C','0','1','2')

/*
 * Version guards.  Built and tested on PostgreSQL 15, 17 and 18; these are
 * the API changes since 15 that the code meets.
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

/*
 * The limits on names and keys, in one place: the functions check them and
 * the tables' constraints call pacelc_private.valid_sku(), valid_key() and
 * valid_queue_name() (support.c), so they cannot disagree.
 */
#define PACELC_SKU_MAXLEN	63	/* bytes; escrow.c keeps SKUs in shared memory */
#define PACELC_KEY_MAXLEN	255 /* bytes, an idempotency key */
#define PACELC_QUEUE_NAME_MAXLEN 56 /* [A-Za-z_][A-Za-z0-9_.-]*, so bytes */

/* Set by _PG_init when loaded through shared_preload_libraries. */
extern bool pacelc_preloaded;

extern void pacelc_check_loaded(void);
extern void pacelc_pin_owner_path(void);
extern int	pacelc_owner_path_enter(bool pin);
extern void pacelc_owner_path_leave(int saved, bool failed);
extern void pacelc_require_arg(FunctionCallInfo fcinfo, int argno,
							   const char *name);
extern void pacelc_check_key(text *key);
extern bool pacelc_queue_name_valid(text *name);
extern void pacelc_check_queue_name(text *name);
extern SPIPlanPtr pacelc_keep_plan(SPIPlanPtr *plan, const char *sql,
								   int nargs, Oid *argtypes);
extern ErrorData *pacelc_run_in_subxact(void (*fn) (void *arg), void *arg);
extern void *pacelc_grow_array(void *array, int *max, int need, Size elemsize);
extern IndexScanDesc pacelc_text_index_scan(Relation heap, Relation index,
											Datum key, Snapshot snapshot);
extern void pacelc_next_utility(ProcessUtility_hook_type prev, PlannedStmt *pstmt,
								const char *queryString, bool readOnlyTree,
								ProcessUtilityContext context, ParamListInfo params,
								QueryEnvironment *queryEnv, DestReceiver *dest,
								QueryCompletion *qc);

#endif							/* PACELC_SUPPORT_H */
