/*-------------------------------------------------------------------------
 *
 * privilege.h
 *		Who is calling, and acting for the extension's owner on their behalf.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PACELC_PRIVILEGE_H
#define PACELC_PRIVILEGE_H

#include "fmgr.h"
#include "datatype/timestamp.h"

extern void pacelc_privilege_init(void);
extern Datum pacelc_run_as_owner(FunctionCallInfo fcinfo, PGFunction body,
								 bool pin);
extern Oid	pacelc_caller(void);
extern bool pacelc_schema_03(void);
extern void pacelc_refuse_old_definer(void);
extern bool pacelc_is_admin(Oid role);
extern bool pacelc_acts_for(Oid role, Oid owner);
extern void pacelc_require_internal(FunctionCallInfo fcinfo);
extern void pacelc_set_handler_role(Oid role);
extern TimestampTz pacelc_future_timestamp(Interval *iv, const char *name,
										   bool allow_zero, int max_years);

/*
 * Defines the SQL-callable C function "name" that runs "body" as the
 * extension's owner, with the owner's search path (see privilege.c).
 */
#define PACELC_OWNER_ENTRY(name, body) \
	PG_FUNCTION_INFO_V1(name); \
	Datum \
	name(PG_FUNCTION_ARGS) \
	{ \
		return pacelc_run_as_owner(fcinfo, body, true); \
	}

/*
 * The same, for a body that calls pacelc_pin_owner_path() (support.c)
 * itself before anything resolves a name or may run code not pacelc's.
 */
#define PACELC_OWNER_ENTRY_LAZY(name, body) \
	PG_FUNCTION_INFO_V1(name); \
	Datum \
	name(PG_FUNCTION_ARGS) \
	{ \
		return pacelc_run_as_owner(fcinfo, body, false); \
	}

#endif							/* PACELC_PRIVILEGE_H */
