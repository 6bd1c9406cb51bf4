/*-------------------------------------------------------------------------
 *
 * privilege.c
 *		Who is calling, and acting for the extension on their behalf.
 *
 * pacelc's tables are private to the extension's owner.  An application
 * changes them only through pacelc's functions, which must therefore act
 * with the owner's rights while judging the caller as the role whose code
 * made the call (current_user at the call site, as PostgreSQL's own
 * privilege checks do).  A SECURITY DEFINER function cannot do both: inside
 * it, current_user is already the definer and the caller is gone.  So
 * pacelc's entry points are SECURITY INVOKER and switch to the owner here,
 * after noting the caller:
 *
 *	- C entry points run their body through pacelc_run_as_owner(); the body
 *	  asks pacelc_caller() who called.
 *	- SQL-level entry points that are written in PL/pgSQL are declared as
 *	  the C function pacelc_call_private(), which calls the function of the
 *	  same name in schema pacelc_private (no one has USAGE on it) with the
 *	  caller's OID as an extra first argument, as the owner.
 *
 * Either way the code runs with search_path = pg_catalog, pacelc, pg_temp
 * (the PL/pgSQL functions through a SET clause, the C entry points through
 * pacelc_pin_owner_path()), so no name in their bodies can resolve to a
 * caller's temporary object or to a caller's schema.
 * A failing call needs no cleanup here: (sub)transaction abort restores the
 * user ID and security context, as it does for SECURITY DEFINER functions.
 *
 * The file also refuses DROP ROLE of a role that owns a queue, holds
 * rights on one or owns a held reservation in the current database (PostgreSQL refuses to drop a role
 * that owns objects for the same reason: its OID must not come back as
 * someone else).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parse_func.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "privilege.h"
#include "support.h"

#define PRIVATE_SCHEMA	"pacelc_private"
#define ADMIN_ROLE		"pacelc_admin"

/* The role that called the innermost pacelc entry point now running. */
static Oid	current_caller = InvalidOid;

static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* Owner of the function being called: the role pacelc acts as. */
static Oid
function_owner(Oid fn_oid)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn_oid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for function %u", fn_oid);
	owner = ((Form_pg_proc) GETSTRUCT(tup))->proowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * The owner is looked up once per call site (FmgrInfo) and kept in
 * fn_extra, which C entry points of pacelc do not use otherwise.
 */
static Oid
cached_owner(FunctionCallInfo fcinfo)
{
	FmgrInfo   *flinfo = fcinfo->flinfo;

	if (flinfo->fn_extra == NULL)
	{
		Oid		   *owner = MemoryContextAlloc(flinfo->fn_mcxt, sizeof(Oid));

		*owner = function_owner(flinfo->fn_oid);
		flinfo->fn_extra = owner;
	}
	return *(Oid *) flinfo->fn_extra;
}

/*
 * Runs body as the owner of the called function, with pacelc_caller()
 * telling it who called, and with the owner's search path pinned
 * (support.c): from the start, or (pin false) from when body first asks
 * for it.  On error, (sub)transaction abort restores the user ID, the
 * security context and the search path, as it does for SECURITY DEFINER
 * functions.
 */
Datum
pacelc_run_as_owner(FunctionCallInfo fcinfo, PGFunction body, bool pin)
{
	Oid			save_caller = current_caller;
	Oid			save_userid;
	int			save_sec_context;
	int			save_path;
	Datum		result;

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	current_caller = save_userid;
	SetUserIdAndSecContext(cached_owner(fcinfo),
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	save_path = pacelc_owner_path_enter(pin);
	PG_TRY();
	{
		result = body(fcinfo);
	}
	PG_CATCH();
	{
		current_caller = save_caller;
		pacelc_owner_path_leave(save_path, true);
		PG_RE_THROW();
	}
	PG_END_TRY();
	current_caller = save_caller;
	pacelc_owner_path_leave(save_path, false);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	return result;
}

/*
 * Are this database's pacelc objects at 0.3 or later?  The library serves
 * databases whose ALTER EXTENSION pacelc UPDATE has not run yet with the
 * 0.2 behaviour (no reservation owners, no queue rights).
 */
static int	schema_03_cached = -1;	/* -1: not known, else the answer */
static uint64 schema_03_invals = 0;
static bool schema_03_callback = false;

/* Any change to pg_namespace (CREATE/DROP/ALTER SCHEMA): look again. */
static void
schema_03_invalidate(Datum arg, int cacheid, uint32 hashvalue)
{
	schema_03_cached = -1;
	schema_03_invals++;
}

static bool
schema_03_lookup(void)
{
	Oid			nsp = get_namespace_oid(PRIVATE_SCHEMA, true);
	HeapTuple	tup;
	bool		ours = false;

	if (!OidIsValid(nsp))
		return false;
	/* created by the update script: owned by the extension's owner */
	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nsp));
	if (HeapTupleIsValid(tup))
	{
		Oid			pacelc_nsp = get_namespace_oid("pacelc", true);
		HeapTuple	tup2 = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(pacelc_nsp));

		if (HeapTupleIsValid(tup2))
		{
			ours = ((Form_pg_namespace) GETSTRUCT(tup))->nspowner ==
				((Form_pg_namespace) GETSTRUCT(tup2))->nspowner;
			ReleaseSysCache(tup2);
		}
		ReleaseSysCache(tup);
	}
	return ours;
}

/*
 * The answer depends on pg_namespace alone, so it is kept until a change
 * to pg_namespace is seen (an update, DROP/CREATE EXTENSION, ALTER SCHEMA
 * ... OWNER TO), instead of three catalog lookups per reserve.
 */
bool
pacelc_schema_03(void)
{
	bool		answer;
	uint64		invals;

	if (schema_03_cached >= 0)
		return schema_03_cached == 1;
	if (!schema_03_callback)
	{
		CacheRegisterSyscacheCallback(NAMESPACEOID, schema_03_invalidate, (Datum) 0);
		schema_03_callback = true;
	}
	invals = schema_03_invals;
	answer = schema_03_lookup();
	/* an invalidation seen during the lookup leaves the answer unknown */
	if (schema_03_invals == invals)
		schema_03_cached = answer ? 1 : 0;
	return answer;
}

/*
 * The SQL functions of pacelc 0.1 and 0.2 are SECURITY DEFINER with a
 * search_path that lets a caller's temporary objects shadow names.  In a
 * database whose ALTER EXTENSION pacelc UPDATE has not run yet, this
 * library refuses them to everyone but superusers (the worker included),
 * whose code a shadowing object could not run with more rights.  They
 * call _assert_loaded() or _outer_user() before anything else.
 */
void
pacelc_refuse_old_definer(void)
{
	if (!pacelc_schema_03() && !superuser_arg(GetOuterUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pacelc in this database must be updated before ordinary roles may use this function"),
				 errdetail("The installed pacelc library refuses the functions of pacelc 0.1 and 0.2 that run as the extension's owner, which are open to privilege escalation."),
				 errhint("Run ALTER EXTENSION pacelc UPDATE in this database.")));
}

PG_FUNCTION_INFO_V1(pacelc_assert_loaded);

/*
 * SQL and PL/pgSQL functions of the extension call this so that they, too,
 * fail cleanly when the library is not preloaded.
 */
Datum
pacelc_assert_loaded(PG_FUNCTION_ARGS)
{
	pacelc_check_loaded();
	pacelc_refuse_old_definer();
	PG_RETURN_VOID();
}

/*
 * In a worker, the owner of the queue whose handler is running.  The
 * worker runs handlers with SetUserIdAndSecContext, which leaves the outer
 * user at the worker's bootstrap superuser: a handler calling 0.1/0.2's
 * _outer_user() must be judged as the queue's owner it runs as, not as that
 * superuser.
 */
static Oid	handler_role = InvalidOid;

void
pacelc_set_handler_role(Oid role)
{
	handler_role = role;
}

PG_FUNCTION_INFO_V1(pacelc_outer_user);

/*
 * pacelc._outer_user() of 0.1 and 0.2, dropped by the 0.3 update script
 * (which judges callers as current_user at the call site, see above).
 * The symbol stays for the older scripts that create the function.
 */
Datum
pacelc_outer_user(PG_FUNCTION_ARGS)
{
	pacelc_refuse_old_definer();
	if (OidIsValid(handler_role))
		PG_RETURN_OID(handler_role);
	PG_RETURN_OID(GetOuterUserId());
}

/* The role whose code called the running entry point. */
Oid
pacelc_caller(void)
{
	if (!OidIsValid(current_caller))
		elog(ERROR, "pacelc_caller() called outside of a pacelc entry point");
	return current_caller;
}

/*
 * May role act for everything in pacelc (confirm anyone's hold, consume any
 * queue)?  Superusers and members of pacelc_admin may.
 */
bool
pacelc_is_admin(Oid role)
{
	Oid			admin;

	if (superuser_arg(role))
		return true;
	admin = get_role_oid(ADMIN_ROLE, true);
	return OidIsValid(admin) && has_privs_of_role(role, admin);
}

/* Does role act with the rights of owner (owner itself, a member, admin)? */
bool
pacelc_acts_for(Oid role, Oid owner)
{
	return has_privs_of_role(role, owner) || pacelc_is_admin(role);
}

/*
 * Internal C functions of the schema pacelc are meant for pacelc's own
 * code, which runs as the owner; an application role that was granted
 * EXECUTE on them (GRANT ... ON ALL FUNCTIONS) is still refused.
 */
void
pacelc_require_internal(FunctionCallInfo fcinfo)
{
	Oid			owner = cached_owner(fcinfo);

	if (!has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("function \"%s\" is internal to pacelc",
						get_func_name(fcinfo->flinfo->fn_oid)),
				 errdetail("Only pacelc's own functions may call it.")));
}

/* ---------------------------------------------------------------------
 * Entry points written in PL/pgSQL
 * --------------------------------------------------------------------- */

typedef struct PrivateCall
{
	FmgrInfo	flinfo;			/* pacelc_private.<name>(oid, ...) */
	Oid			owner;
	int			nargs;
} PrivateCall;

static PrivateCall *
private_call_setup(FunctionCallInfo fcinfo)
{
	FmgrInfo   *flinfo = fcinfo->flinfo;
	PrivateCall *pc;
	HeapTuple	tup;
	Form_pg_proc proc;
	Oid			argtypes[FUNC_MAX_ARGS];
	Oid			target;
	List	   *name;
	Oid			save_userid;
	int			save_sec_context;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(flinfo->fn_oid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for function %u", flinfo->fn_oid);
	proc = (Form_pg_proc) GETSTRUCT(tup);
	if (proc->pronargs >= FUNC_MAX_ARGS)
		elog(ERROR, "too many arguments for pacelc_call_private");
	argtypes[0] = OIDOID;
	memcpy(&argtypes[1], proc->proargtypes.values, proc->pronargs * sizeof(Oid));
	name = list_make2(makeString(PRIVATE_SCHEMA),
					  makeString(pstrdup(NameStr(proc->proname))));
	/* the caller has no USAGE on pacelc_private: look it up as the owner */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(proc->proowner,
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	target = LookupFuncName(name, proc->pronargs + 1, argtypes, false);
	SetUserIdAndSecContext(save_userid, save_sec_context);

	pc = MemoryContextAllocZero(flinfo->fn_mcxt, sizeof(PrivateCall));
	pc->owner = proc->proowner;
	pc->nargs = proc->pronargs;
	ReleaseSysCache(tup);
	fmgr_info_cxt(target, &pc->flinfo, flinfo->fn_mcxt);
	flinfo->fn_extra = pc;
	return pc;
}

PG_FUNCTION_INFO_V1(pacelc_call_private);

/*
 * The C body of every PL/pgSQL-implemented entry point: calls its
 * implementation in pacelc_private with the caller prepended, as the owner.
 * Set-returning implementations share the caller's ReturnSetInfo.
 */
Datum
pacelc_call_private(PG_FUNCTION_ARGS)
{
	PrivateCall *pc = fcinfo->flinfo->fn_extra;

	LOCAL_FCINFO(inner, FUNC_MAX_ARGS);
	Oid			save_userid;
	int			save_sec_context;
	Datum		result;
	int			i;

	pacelc_check_loaded();
	if (pc == NULL)
		pc = private_call_setup(fcinfo);
	GetUserIdAndSecContext(&save_userid, &save_sec_context);

	/*
	 * Not the caller's collation: a nondeterministic one would make the
	 * implementation's name comparisons match other applications' queues.
	 */
	InitFunctionCallInfoData(*inner, &pc->flinfo, pc->nargs + 1,
							 InvalidOid, fcinfo->context, fcinfo->resultinfo);
	inner->args[0].value = ObjectIdGetDatum(save_userid);
	inner->args[0].isnull = false;
	for (i = 0; i < pc->nargs; i++)
		inner->args[i + 1] = fcinfo->args[i];

	SetUserIdAndSecContext(pc->owner,
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	result = FunctionCallInvoke(inner);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	fcinfo->isnull = inner->isnull;
	return result;
}

PG_FUNCTION_INFO_V1(pacelc_private_is_admin);

/* pacelc_private.is_admin(role oid): for the PL/pgSQL implementations. */
Datum
pacelc_private_is_admin(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(pacelc_is_admin(PG_GETARG_OID(0)));
}

/* ---------------------------------------------------------------------
 * Intervals that must end in the future
 * --------------------------------------------------------------------- */

static void
interval_too_long(const char *name, int max_years)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg_plural("%s must be at most %d year",
						   "%s must be at most %d years",
						   max_years, name, max_years)));
}

/*
 * Checks that now + iv is a timestamp after now (or not before it, with
 * allow_zero) and at most max_years ahead, and returns it.  Comparing the
 * interval with zero is not enough: '-1 month +30 days 23 hours' compares
 * as positive, yet in a 31-day month it ends before it starts.
 */
TimestampTz
pacelc_future_timestamp(Interval *iv, const char *name, bool allow_zero,
						int max_years)
{
	TimestampTz now = GetCurrentTimestamp();
	Interval	max;
	TimestampTz end;
	TimestampTz limit;

	/*
	 * Each field on its own first (interval_cmp() counts a month as 30 days,
	 * so '1000 years -360000 days' would compare as small): bounded fields
	 * cannot overflow when added to now.
	 */
	if (iv->month > max_years * MONTHS_PER_YEAR ||
		iv->month < -max_years * MONTHS_PER_YEAR ||
		iv->day > max_years * 366 || iv->day < -max_years * 366 ||
		iv->time > (int64) max_years * 366 * USECS_PER_DAY ||
		iv->time < -(int64) max_years * 366 * USECS_PER_DAY)
		interval_too_long(name, max_years);
	memset(&max, 0, sizeof(max));
	max.month = max_years * MONTHS_PER_YEAR;
	end = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
												  TimestampTzGetDatum(now),
												  IntervalPGetDatum(iv)));
	limit = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
													TimestampTzGetDatum(now),
													IntervalPGetDatum(&max)));
	if (end > limit)
		interval_too_long(name, max_years);
	if (end < now || (end == now && !allow_zero))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg(allow_zero ? "%s must not be negative" : "%s must be positive",
						name),
				 errdetail("Added to the current time, it gives a time in the past.")));
	return end;
}

PG_FUNCTION_INFO_V1(pacelc_private_check_interval);

/*
 * pacelc_private.check_interval(iv, name, allow_zero, max_years): the same
 * check for the PL/pgSQL implementations.  NULL passes (callers decide).
 */
Datum
pacelc_private_check_interval(PG_FUNCTION_ARGS)
{
	if (!PG_ARGISNULL(0))
		(void) pacelc_future_timestamp(PG_GETARG_INTERVAL_P(0),
									   text_to_cstring(PG_GETARG_TEXT_PP(1)),
									   PG_GETARG_BOOL(2), PG_GETARG_INT32(3));
	PG_RETURN_VOID();
}

/* ---------------------------------------------------------------------
 * DROP ROLE of a role that owns a queue
 * --------------------------------------------------------------------- */

/*
 * The DDL hooks below read and change pacelc's tables whoever issued the
 * statement: through SPI as the bootstrap superuser, in a restricted
 * security context (no caller's code can run with those rights).
 */
typedef struct SavedUser
{
	Oid			userid;
	int			sec_context;
} SavedUser;

static void
bootstrap_spi_connect(SavedUser *saved)
{
	GetUserIdAndSecContext(&saved->userid, &saved->sec_context);
	SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID,
						   saved->sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	SPI_connect();
}

static void
bootstrap_spi_finish(SavedUser *saved)
{
	SPI_finish();
	SetUserIdAndSecContext(saved->userid, saved->sec_context);
}

/*
 * May the current user drop role, as DROP ROLE judges it?  For another,
 * PostgreSQL refuses the statement anyway, and pacelc's check must not run
 * first: its error names the role's queues, grants and holds, which
 * another application must not learn.
 */
static bool
may_drop_role(Oid role)
{
	if (superuser())
		return true;
	if (!has_createrole_privilege(GetUserId()))
		return false;
#if PG_VERSION_NUM >= 160000
	return is_admin_of_role(GetUserId(), role);
#else
	return !superuser_arg(role);
#endif
}

/* Refuses if pacelc objects of this database depend on role. */
static void
check_role_unused(Oid role, const char *rolename)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1];
	SavedUser	saved;
	int			rc;

	values[0] = ObjectIdGetDatum(role);
	bootstrap_spi_connect(&saved);
	rc = SPI_execute_with_args("SELECT 1, q.name FROM pacelc.queues q"
							   " WHERE q.owner OPERATOR(pg_catalog.=) $1::pg_catalog.regrole"
							   " UNION ALL"
							   " SELECT 2, g.queue FROM pacelc.queue_grants g"
							   " WHERE g.grantee OPERATOR(pg_catalog.=) $1::pg_catalog.regrole"
							   " UNION ALL"
							   " SELECT 3, r.id::pg_catalog.text"
							   "   FROM pacelc.reservation_data r"
							   " WHERE r.owner OPERATOR(pg_catalog.=) $1::pg_catalog.regrole"
							   "   AND r.state OPERATOR(pg_catalog.=) 'held'"
							   " LIMIT 1",
							   1, argtypes, values, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not look up the queues of role %u", role);
	if (SPI_processed > 0)
	{
		char	   *kind = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		char	   *name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
		char	   *dbname = get_database_name(MyDatabaseId);

		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("role \"%s\" cannot be dropped because some pacelc objects depend on it",
						rolename),
				 kind[0] == '1' ?
				 errdetail("The role owns pacelc queue \"%s\" in database \"%s\".",
						   name, dbname) :
				 kind[0] == '2' ?
				 errdetail("The role has rights on pacelc queue \"%s\" in database \"%s\".",
						   name, dbname) :
				 errdetail("The role owns held pacelc reservation %s in database \"%s\".",
						   name, dbname),
				 errhint("Hand its queues over with pacelc.alter_queue(new_owner => ...), revoke with pacelc.revoke_queue() and end its holds first.")));
	}
	bootstrap_spi_finish(&saved);
}

static void
check_drop_role(DropRoleStmt *stmt)
{
	ListCell   *lc;
	Oid			nsp;

	/* only databases whose pacelc is at 0.3 or later have queue_grants */
	nsp = get_namespace_oid(PRIVATE_SCHEMA, true);
	if (!OidIsValid(nsp) || !OidIsValid(get_extension_oid("pacelc", true)))
		return;
	foreach(lc, stmt->roles)
	{
		RoleSpec   *spec = lfirst(lc);
		Oid			role;

		if (spec->roletype != ROLESPEC_CSTRING)
			continue;			/* DROP ROLE CURRENT_USER etc. fail anyway */
		role = get_role_oid(spec->rolename, true);
		if (OidIsValid(role) && may_drop_role(role))
			check_role_unused(role, spec->rolename);
	}
}

/*
 * DROP OWNED BY revokes what was granted to the roles, REASSIGN OWNED BY
 * hands what they own to the new role: for pacelc's queues and holds too,
 * so that the roles can then be dropped as PostgreSQL's own objects allow.
 *
 * PostgreSQL lets any role with the privileges of the roles run DROP OWNED
 * (every member of pacelc_app may run DROP OWNED BY pacelc_app), and then
 * revokes only what the current user could revoke itself.  So does this:
 * the grants on queues whose owner the current user acts for (any queue
 * for pacelc_admin and superusers), never another application's grants.
 */
static void
follow_owned(Node *stmt)
{
	List	   *roles = IsA(stmt, DropOwnedStmt) ? ((DropOwnedStmt *) stmt)->roles
	: ((ReassignOwnedStmt *) stmt)->roles;
	Oid			newrole = InvalidOid;
	Oid			user = GetUserId();
	bool		admin;
	SavedUser	saved;
	ListCell   *lc;

	if (!pacelc_schema_03() || !OidIsValid(get_extension_oid("pacelc", true)))
		return;
	admin = pacelc_is_admin(user);
	if (IsA(stmt, ReassignOwnedStmt))
		newrole = get_rolespec_oid(((ReassignOwnedStmt *) stmt)->newrole, false);
	bootstrap_spi_connect(&saved);
	foreach(lc, roles)
	{
		Oid			argtypes[4] = {OIDOID, OIDOID, OIDOID, BOOLOID};
		Datum		values[4];
		const char *sql;

		values[0] = ObjectIdGetDatum(get_rolespec_oid(lfirst(lc), false));
		values[1] = ObjectIdGetDatum(newrole);
		values[2] = ObjectIdGetDatum(user);
		values[3] = BoolGetDatum(admin);
		if (IsA(stmt, DropOwnedStmt))
			sql = "DELETE FROM pacelc.queue_grants g"
				" WHERE g.grantee OPERATOR(pg_catalog.=) $1::pg_catalog.regrole"
				"   AND ($4 OR NOT EXISTS (SELECT FROM pacelc.queues q"
				"        WHERE q.name OPERATOR(pg_catalog.=) g.queue"
				"          AND NOT pg_catalog.pg_has_role($3, q.owner::pg_catalog.oid, 'USAGE')))";
		else
			sql = "WITH q AS (UPDATE pacelc.queues q SET owner = $2::pg_catalog.regrole"
				"            WHERE q.owner OPERATOR(pg_catalog.=) $1::pg_catalog.regrole),"
				"     r AS (UPDATE pacelc.reservation_data r SET owner = $2::pg_catalog.regrole"
				"            WHERE r.owner OPERATOR(pg_catalog.=) $1::pg_catalog.regrole)"
				" UPDATE pacelc.idempotency_keys k SET owner = $2::pg_catalog.regrole"
				"  WHERE k.owner OPERATOR(pg_catalog.=) $1::pg_catalog.regrole";
		if (SPI_execute_with_args(sql, 4, argtypes, values, NULL, false, 0) < 0)
			elog(ERROR, "could not update pacelc objects of role %u",
				 DatumGetObjectId(values[0]));
	}
	bootstrap_spi_finish(&saved);
}

/*
 * The tables of one of pacelc's schemas (at most "max" of them).
 */
static int
schema_tables(const char *schema, Oid *relids, int max)
{
	Oid			nsp = get_namespace_oid(schema, true);
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tup;
	int			n = 0;

	if (!OidIsValid(nsp))
		return 0;
	ScanKeyInit(&key, Anum_pg_class_relnamespace, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(nsp));
	rel = table_open(RelationRelationId, AccessShareLock);
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 1, &key);
	while (n < max && HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_class form = (Form_pg_class) GETSTRUCT(tup);

		if (form->relkind == RELKIND_RELATION ||
			form->relkind == RELKIND_PARTITIONED_TABLE)
			relids[n++] = form->oid;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return n;
}

/*
 * DROP EXTENSION pacelc locks the extension's tables one at a time, in the
 * order they were created, while a round of a worker may hold one of them
 * and ask for another: a deadlock, and PostgreSQL may pick DROP EXTENSION
 * as its victim.  Take them all first without queueing, as the update
 * scripts do (a lock asked with NOWAIT is never part of a cycle), polling
 * until the workers' rounds let go.  After 10 s (or lock_timeout) DROP
 * goes on and queues for its locks as it would without pacelc.
 */
static void
lock_tables_for_drop(DropStmt *stmt)
{
	Oid			relids[64];
	int			n;
	TimestampTz deadline;
	ListCell   *lc;
	bool		ours = false;
	Oid			extoid;

	if (stmt->removeType != OBJECT_EXTENSION)
		return;
	foreach(lc, stmt->objects)
	{
		if (strcmp(strVal(lfirst(lc)), "pacelc") == 0)
			ours = true;
	}
	if (!ours || !OidIsValid(extoid = get_extension_oid("pacelc", true)))
		return;

	/*
	 * Only for a role that may drop it: another would take (and take again,
	 * for up to lock_timeout) ACCESS EXCLUSIVE locks on tables it has no
	 * right to, before PostgreSQL refuses its DROP.
	 */
#if PG_VERSION_NUM >= 160000
	if (!object_ownercheck(ExtensionRelationId, extoid, GetUserId()))
		return;
#else
	if (!pg_extension_ownercheck(extoid, GetUserId()))
		return;
#endif
	n = schema_tables("pacelc", relids, lengthof(relids));
	n += schema_tables(PRIVATE_SCHEMA, relids + n, lengthof(relids) - n);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										   LockTimeout > 0 ? LockTimeout : 10000);
	for (;;)
	{
		int			i;

		for (i = 0; i < n; i++)
		{
			if (!ConditionalLockRelationOid(relids[i], AccessExclusiveLock))
				break;
		}
		if (i == n)
			return;
		while (--i >= 0)
			UnlockRelationOid(relids[i], AccessExclusiveLock);
		if (GetCurrentTimestamp() >= deadline)
			return;
		CHECK_FOR_INTERRUPTS();
		pg_usleep(10000L);
	}
}

static void
privilege_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
						 bool readOnlyTree, ProcessUtilityContext context,
						 ParamListInfo params, QueryEnvironment *queryEnv,
						 DestReceiver *dest, QueryCompletion *qc)
{
	if (IsA(pstmt->utilityStmt, DropRoleStmt) && IsTransactionState())
		check_drop_role((DropRoleStmt *) pstmt->utilityStmt);
	if (IsA(pstmt->utilityStmt, DropStmt) && IsTransactionState())
		lock_tables_for_drop((DropStmt *) pstmt->utilityStmt);
	pacelc_next_utility(prev_ProcessUtility, pstmt, queryString, readOnlyTree,
						context, params, queryEnv, dest, qc);
	/* after PostgreSQL's own checks of the statement passed */
	if ((IsA(pstmt->utilityStmt, DropOwnedStmt) ||
		 IsA(pstmt->utilityStmt, ReassignOwnedStmt)) && IsTransactionState())
		follow_owned(pstmt->utilityStmt);
}

void
pacelc_privilege_init(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = privilege_ProcessUtility;
}
