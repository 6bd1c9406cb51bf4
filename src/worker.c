/*-------------------------------------------------------------------------
 *
 * worker.c
 *		The launcher and the per-database background workers.
 *
 * The launcher is a static background worker, started by the postmaster
 * once recovery has finished (so it does nothing on a standby and starts
 * after a promotion) and restarted after a crash.  It connects to no
 * database, reads pg_database and starts one dynamic worker per database
 * (optionally only those in pacelc.databases); a worker whose database has
 * no pacelc extension exits, and the launcher looks again later or as soon
 * as CREATE EXTENSION pacelc asks it to.
 *
 * A database worker sleeps on its latch.  A committing enqueue sets it, so a
 * due message is handled within milliseconds; otherwise it sleeps until the
 * next due message or hold expiry, at most pacelc.worker_naptime.  Each
 * round it expires due holds, folds confirmed units, and runs the handlers
 * of due messages, a batch per transaction: each handler call in its own
 * subtransaction, as the queue's owner, under pacelc.handler_timeout.  The
 * handler's effects and the message's "done" commit together, which is what
 * makes a crash at any moment lose nothing and run nothing twice.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "pacelc.h"

PGDLLEXPORT void pacelc_launcher_main(Datum arg);
PGDLLEXPORT void pacelc_worker_main(Datum arg);

static int	worker_batch = 100;
static int	handler_timeout_ms = 30000;
static int	worker_naptime_s = 5;
static int	launcher_naptime_s = 30;
static int	done_retention_s = 86400;
static char *worker_databases = NULL;

#define MAX_DATABASES 1024

/* ---------------------------------------------------------------------
 * Registration
 * --------------------------------------------------------------------- */

void
worker_init(void)
{
	BackgroundWorker bgw;

	/*
	 * pg_upgrade runs both clusters in binary-upgrade mode: no worker may
	 * touch a database that is being restored or read for the upgrade.
	 */
	if (IsBinaryUpgrade)
		return;

	DefineCustomIntVariable("pacelc.worker_batch",
							"Messages a worker handles per transaction.",
							NULL, &worker_batch, 100, 1, 10000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pacelc.handler_timeout",
							"Time limit for one handler call.",
							"A handler still running then is cancelled and counts as a failed attempt.",
							&handler_timeout_ms, 30000, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pacelc.worker_naptime",
							"Longest sleep of a database worker between rounds.",
							"Enqueues wake the worker at once; this bounds how late expiry and housekeeping can run.",
							&worker_naptime_s, 5, 1, 3600,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("pacelc.launcher_naptime",
							"How often the launcher looks for databases to serve.",
							"CREATE EXTENSION pacelc wakes it at once.",
							&launcher_naptime_s, 30, 1, 3600,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("pacelc.done_retention",
							"How long handled messages are kept before the worker deletes them (0 keeps them).",
							NULL, &done_retention_s, 86400, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomStringVariable("pacelc.databases",
							   "Databases the worker serves (comma-separated); empty serves every database that has the extension.",
							   NULL, &worker_databases, "",
							   PGC_SIGHUP, GUC_LIST_INPUT, NULL, NULL, NULL);

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 5;
	strlcpy(bgw.bgw_library_name, "pacelc", BGW_MAXLEN);
	strlcpy(bgw.bgw_function_name, "pacelc_launcher_main", BGW_MAXLEN);
	strlcpy(bgw.bgw_name, "pacelc launcher", BGW_MAXLEN);
	strlcpy(bgw.bgw_type, "pacelc launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&bgw);
}

/* ---------------------------------------------------------------------
 * Launcher
 * --------------------------------------------------------------------- */

typedef struct DbCandidate
{
	Oid			dbid;
	char		name[NAMEDATALEN];
} DbCandidate;

/* The launcher's memory of when to try a database again. */
typedef struct DbNextTry
{
	Oid			dbid;			/* hash key */
	TimestampTz when;
} DbNextTry;

/* Is this database named in pacelc.databases (or is the list empty)? */
static bool
database_wanted(const char *name)
{
	char	   *raw;
	List	   *names;
	ListCell   *lc;
	bool		wanted = false;

	if (worker_databases == NULL || worker_databases[0] == '\0')
		return true;
	raw = pstrdup(worker_databases);
	if (!SplitIdentifierString(raw, ',', &names))
		return false;
	foreach(lc, names)
		if (strcmp((char *) lfirst(lc), name) == 0)
			wanted = true;
	list_free(names);
	pfree(raw);
	return wanted;
}

/* Lists the databases that accept connections, like autovacuum does. */
static int
list_databases(DbCandidate *out, int max)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	int			n = 0;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (n < max && HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (!db->datallowconn || db->datistemplate)
			continue;
		if (!database_wanted(NameStr(db->datname)))
			continue;
		out[n].dbid = db->oid;
		strlcpy(out[n].name, NameStr(db->datname), NAMEDATALEN);
		n++;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return n;
}

static bool
start_database_worker(Oid dbid, const char *dbname)
{
	BackgroundWorker bgw;
	BackgroundWorkerHandle *handle;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(bgw.bgw_library_name, "pacelc", BGW_MAXLEN);
	strlcpy(bgw.bgw_function_name, "pacelc_worker_main", BGW_MAXLEN);
	snprintf(bgw.bgw_name, BGW_MAXLEN, "pacelc worker for %s", dbname);
	strlcpy(bgw.bgw_type, "pacelc worker", BGW_MAXLEN);
	bgw.bgw_main_arg = ObjectIdGetDatum(dbid);
	bgw.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&bgw, &handle))
	{
		ereport(LOG,
				(errmsg("pacelc launcher could not start a worker for database \"%s\"", dbname),
				 errhint("Increase max_worker_processes.")));
		return false;
	}
	return true;
}

/*
 * Starts a worker for each wanted database that has none.  Databases whose
 * worker found no extension are retried only after launcher_naptime (or at
 * once on a rescan request).
 */
static void
launcher_scan(HTAB *next_try, bool rescan)
{
	DbCandidate *dbs = palloc(sizeof(DbCandidate) * MAX_DATABASES);
	int			n = list_databases(dbs, MAX_DATABASES);
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	for (i = 0; i < n; i++)
	{
		bool		found;
		DbNextTry  *entry;

		if (queue_database_served(dbs[i].dbid))
			continue;
		entry = hash_search(next_try, &dbs[i].dbid, HASH_ENTER, &found);
		if (!found)
			entry->when = 0;
		if (!rescan && entry->when > now)
			continue;
		if (start_database_worker(dbs[i].dbid, dbs[i].name))
			entry->when = TimestampTzPlusMilliseconds(now, launcher_naptime_s * 1000L);
	}
	pfree(dbs);
}

/* Withdraws the launcher's latch from shared memory when it exits. */
static void
launcher_exit(int code, Datum arg)
{
	queue_set_launcher(NULL);
}

void
pacelc_launcher_main(Datum arg)
{
	HASHCTL		ctl;
	HTAB	   *next_try;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("pacelc launcher");

	queue_set_launcher(MyProc);
	before_shmem_exit(launcher_exit, (Datum) 0);

	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(DbNextTry);
	next_try = hash_create("pacelc launcher databases", 64, &ctl,
						   HASH_ELEM | HASH_BLOBS);

	for (;;)
	{
		bool		rescan = queue_take_rescan();

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			/* pacelc.databases may name other databases now */
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			rescan = true;
		}
		launcher_scan(next_try, rescan);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 launcher_naptime_s * 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* ---------------------------------------------------------------------
 * Database worker
 * --------------------------------------------------------------------- */

static void
begin_work(const char *what)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, what);
}

static void
end_work(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

static void
exec_sql(const char *sql)
{
	if (SPI_execute(sql, false, 0) < 0)
		elog(ERROR, "pacelc worker: \"%s\" failed", sql);
}

/* Exits quietly when the database has no (or no longer any) pacelc. */
static void
exit_if_no_extension(void)
{
	bool		present;

	StartTransactionCommand();
	present = OidIsValid(get_extension_oid("pacelc", true));
	CommitTransactionCommand();
	if (!present)
		proc_exit(0);
}

static void plan_next_round(void);

/* Expiry of holds, folding of confirmed units, purge of old messages. */
static void
housekeeping(bool full)
{
	begin_work("pacelc: housekeeping");
	exec_sql("SELECT pacelc.expire_holds(1000)");
	if (full)
	{
		exec_sql("SELECT pacelc.fold_confirmed(1000)");
		if (done_retention_s > 0)
		{
			char		sql[128];

			snprintf(sql, sizeof(sql), "SELECT pacelc.purge_done('%d s')",
					 done_retention_s);
			exec_sql(sql);
		}
	}
	plan_next_round();
	end_work();
}

typedef struct DueMessage
{
	int64		id;
	int32		attempts;
	Oid			handler;
	Oid			owner;
	Datum		payload;		/* detoasted jsonb, in the batch's context */
} DueMessage;


/*
 * Settings of the worker's own statements, and the database's values of
 * them, which handlers get back for their call (see handle_message):
 *
 *	search_path: the statements run as a superuser and resolve names in
 *	trusted schemas only, whatever postgresql.conf or ALTER DATABASE says;
 *	enable_seqscan: every statement is an index probe, but a queue that is
 *	young when a flash sale starts has statistics saying "empty", and a plan
 *	scanning the whole growing table per batch would make the worker fall
 *	further behind the busier it gets;
 *	jit: what enable_seqscan does to cost estimates would otherwise make
 *	PostgreSQL compile every tiny statement.
 */
typedef struct WorkerSetting
{
	const char *name;
	const char *worker_value;
	char	   *handler_value;
} WorkerSetting;

static WorkerSetting worker_settings[] = {
	{"search_path", "pg_catalog, pacelc, pg_temp", NULL},
	{"enable_seqscan", "off", NULL},
	{"jit", "off", NULL},
};

/* Remembers the database's values, then switches to the worker's. */
static void
worker_settings_apply(void)
{
	int			i;

	for (i = 0; i < lengthof(worker_settings); i++)
	{
		worker_settings[i].handler_value =
			MemoryContextStrdup(TopMemoryContext,
								GetConfigOption(worker_settings[i].name, false, false));
		SetConfigOption(worker_settings[i].name, worker_settings[i].worker_value,
						PGC_SUSET, PGC_S_OVERRIDE);
	}
}

/* For a handler's call, inside its GUC nest level: the database's values. */
static void
worker_settings_for_handler(void)
{
	int			i;

	for (i = 0; i < lengthof(worker_settings); i++)
		(void) set_config_option(worker_settings[i].name,
								 worker_settings[i].handler_value,
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
}

/*
 * Plans the worker runs every batch: parsed and planned once per worker
 * (the plan cache replans them after DDL), which matters when a round
 * handles a handful of messages thousands of times a second.
 */
static SPIPlanPtr due_plan = NULL;
static SPIPlanPtr done_plan = NULL;
static SPIPlanPtr fail_plan = NULL;
static SPIPlanPtr plan_plan = NULL;

/*
 * Calls the handler directly through the function manager (no SQL text to
 * parse per message), after the EXECUTE check the executor would have made
 * for its owner, and after making sure that owner is (still) no superuser.
 */
static void
call_handler(DueMessage *m)
{
	FmgrInfo	flinfo;
	LOCAL_FCINFO(fcinfo, 1);

	if (!SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(m->handler)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("handler function %u of the queue no longer exists", m->handler)));
	if (superuser_arg(m->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("a queue handler must not run as a superuser"),
				 errdetail("The queue's owner has become a superuser since the handler was installed."),
				 errhint("Install the handler again as an ordinary role with pacelc.alter_queue().")));
	if (pacelc_proc_aclcheck(m->handler, m->owner, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function %s", get_func_name(m->handler)),
				 errdetail("The queue's owner may not execute its handler.")));
	fmgr_info(m->handler, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = m->payload;
	fcinfo->args[0].isnull = false;
	(void) FunctionCallInvoke(fcinfo);
}

/*
 * Runs one handler in a subtransaction, as the queue's owner, under the
 * handler timeout.  Returns true when it succeeded; the caller marks the
 * message done in the batch's transaction, so the handler's effects and the
 * "done" still commit together.  A failure is rolled back and recorded with
 * its error; it never stops the batch.
 */
static bool
handle_message(DueMessage *m)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	Oid			save_userid;
	int			save_sec;
	int			save_nestlevel;
	bool		ok = true;

	GetUserIdAndSecContext(&save_userid, &save_sec);
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	/* settings the handler changes (even with is_local false) die with it */
	save_nestlevel = NewGUCNestLevel();
	PG_TRY();
	{
		worker_settings_for_handler();
		SetUserIdAndSecContext(m->owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
							   SECURITY_RESTRICTED_OPERATION);
		queue_set_handler_role(m->owner);
		enable_timeout_after(STATEMENT_TIMEOUT, handler_timeout_ms);
		call_handler(m);
		disable_timeout(STATEMENT_TIMEOUT, false);
		queue_set_handler_role(InvalidOid);
		AtEOXact_GUC(false, save_nestlevel);
		SetUserIdAndSecContext(save_userid, save_sec);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		Oid			fargtypes[4] = {INT8OID, TEXTOID, TEXTOID, INT4OID};
		Datum		fvalues[4];

		disable_timeout(STATEMENT_TIMEOUT, false);
		queue_set_handler_role(InvalidOid);
		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
		/* the subtransaction's abort restored the user id */

		fvalues[0] = Int64GetDatum(m->id);
		fvalues[1] = CStringGetTextDatum(edata->message ? edata->message : "unknown error");
		fvalues[2] = CStringGetTextDatum(unpack_sql_state(edata->sqlerrcode));
		fvalues[3] = Int32GetDatum(m->attempts + 1);
		pacelc_keep_plan(&fail_plan, "SELECT pacelc._fail(m, $2, $3, NULL, $4)"
				  "  FROM pacelc.messages m WHERE m.id = $1", 4, fargtypes);
		if (SPI_execute_plan(fail_plan, fvalues, NULL, false, 0) < 0)
			elog(ERROR, "could not record the failure of message " INT64_FORMAT, m->id);
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/*
 * Handles up to pacelc.worker_batch due messages in one transaction, and
 * marks the successful ones done with one UPDATE before it commits.
 * Due messages are picked queue by queue, each from its own range of the
 * (queue, run_at, id) index, so a backlog costs no sort of all ready rows
 * and external consumers' queues are never scanned; only the ones picked
 * are then locked (SKIP LOCKED, re-checked under the lock).  Returns how
 * many it took.
 */
static int
handle_batch(void)
{
	Oid			argtypes[1] = {INT4OID};
	Oid			doneargtypes[1] = {INT8ARRAYOID};
	Datum		values[1];
	DueMessage *msgs;
	Datum	   *done_ids;
	int			n,
				ndone = 0,
				i;

	begin_work("pacelc: handling messages");
	values[0] = Int32GetDatum(worker_batch);
	pacelc_keep_plan(&due_plan,
			  "WITH c AS ("
			  "  SELECT m.id FROM pacelc.queues q CROSS JOIN LATERAL"
			  "         (SELECT m.id, m.run_at FROM pacelc.messages m"
			  "           WHERE m.queue = q.name AND m.state = 'ready'"
			  "             AND m.run_at <= clock_timestamp()"
			  "           ORDER BY m.run_at, m.id LIMIT $1) m"
			  "   WHERE q.handler IS NOT NULL"
			  "   ORDER BY m.run_at, m.id LIMIT $1)"
			  "SELECT m.id, m.attempts,"
			  "       pg_catalog.to_regprocedure(q.handler::pg_catalog.text)::pg_catalog.oid,"
			  "       q.owner::pg_catalog.oid, m.payload"
			  "  FROM c JOIN pacelc.messages m ON m.id = c.id"
			  "  JOIN pacelc.queues q ON q.name = m.queue"
			  " WHERE m.state = 'ready' AND m.run_at <= clock_timestamp()"
			  "   AND q.handler IS NOT NULL"
			  " ORDER BY m.run_at, m.id"
			  "   FOR UPDATE OF m SKIP LOCKED", 1, argtypes);
	if (SPI_execute_plan(due_plan, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "pacelc worker: could not read due messages");
	n = (int) SPI_processed;
	msgs = palloc(sizeof(DueMessage) * Max(n, 1));
	done_ids = palloc(sizeof(Datum) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		msgs[i].id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		msgs[i].attempts = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		msgs[i].handler = DatumGetObjectId(SPI_getbinval(tup, desc, 3, &isnull));
		msgs[i].owner = DatumGetObjectId(SPI_getbinval(tup, desc, 4, &isnull));
		msgs[i].payload =
			PointerGetDatum(PG_DETOAST_DATUM_COPY(SPI_getbinval(tup, desc, 5, &isnull)));
	}
	SPI_freetuptable(SPI_tuptable);
	for (i = 0; i < n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		if (handle_message(&msgs[i]))
			done_ids[ndone++] = Int64GetDatum(msgs[i].id);
	}
	if (ndone > 0)
	{
		values[0] = PointerGetDatum(construct_array(done_ids, ndone, INT8OID,
													sizeof(int64), FLOAT8PASSBYVAL,
													TYPALIGN_DOUBLE));
		pacelc_keep_plan(&done_plan,
				  "UPDATE pacelc.messages SET state = 'done', done_at = clock_timestamp(),"
				  "       attempts = attempts + 1 WHERE id = ANY ($1)", 1, doneargtypes);
		if (SPI_execute_plan(done_plan, values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "pacelc worker: could not mark messages done");
	}
	/* the last batch of a round plans the next round in its transaction */
	if (n < worker_batch)
		plan_next_round();
	end_work();
	return n;
}

/*
 * What the worker knows about its next work, refreshed at the end of every
 * round by plan_next_round(): when the next message of a handler queue is
 * due and when the next hold expires (DT_NOEND: none).  Busy rounds then
 * cost one transaction, not four: the extension check, expiry and planning
 * only run when they can have something to do.
 */
static TimestampTz next_message_at = DT_NOBEGIN;
static TimestampTz next_expiry_at = DT_NOBEGIN;
static bool check_extension = true;

/*
 * Reads both times, inside the caller's transaction.  Per queue, so each
 * probe is one step into the (queue, run_at, id) index; the expiry probe is
 * one step into the partial expiry index.  Plain SQL on purpose: a call of
 * the LANGUAGE sql next_expiry() would rebuild its body every round.
 */
static void
plan_next_round(void)
{
	bool		isnull;
	Datum		d;

	pacelc_keep_plan(&plan_plan,
			  "SELECT (SELECT min(m.run_at) FROM pacelc.queues q CROSS JOIN LATERAL"
			  "          (SELECT m.run_at FROM pacelc.messages m"
			  "            WHERE m.queue = q.name AND m.state = 'ready'"
			  "            ORDER BY m.run_at LIMIT 1) m"
			  "         WHERE q.handler IS NOT NULL),"
			  "       (SELECT min(r.expires_at) FROM pacelc.reservation_data r"
			  "         WHERE r.state = 'held' AND r.expires_at IS NOT NULL)", 0, NULL);
	/* not read-only: a fresh snapshot, which sees this round's own work */
	if (SPI_execute_plan(plan_plan, NULL, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "pacelc worker: could not plan its next round");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	next_message_at = isnull ? DT_NOEND : DatumGetTimestampTz(d);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	next_expiry_at = isnull ? DT_NOEND : DatumGetTimestampTz(d);
}

/* Milliseconds until the next due message or hold expiry, capped. */
static long
next_sleep_ms(TimestampTz now)
{
	TimestampTz next = Min(next_message_at, next_expiry_at);
	long		ms = worker_naptime_s * 1000L;
	long		secs;
	int			usecs;

	if (next == DT_NOEND)
		return ms;
	if (next <= now)
		return 100;				/* due but locked by a consumer: do not spin */
	TimestampDifference(now, next, &secs, &usecs);
	return Min(ms, secs * 1000L + usecs / 1000 + 1);
}

/*
 * One round: due messages batch after batch, then expiry and housekeeping
 * when due.  Returns how long to sleep.
 */
static long
worker_round(TimestampTz *last_full)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		full = TimestampDifferenceExceeds(*last_full, now,
												  worker_naptime_s * 1000);

	/* until this round has planned, every commit that wants us sets our latch */
	queue_set_next_wakeup(0);
	if (full || check_extension)
	{
		exit_if_no_extension();
		check_extension = false;
	}
	/* due messages first: an enqueue that woke us should not wait for expiry */
	while (handle_batch() >= worker_batch)
		CHECK_FOR_INTERRUPTS();
	if (full || next_expiry_at <= now)
		housekeeping(full);
	if (full)
		*last_full = now;
	return next_sleep_ms(GetCurrentTimestamp());
}

void
pacelc_worker_main(Datum arg)
{
	Oid			dbid = DatumGetObjectId(arg);
	TimestampTz last_full = 0;
	MemoryContext round_context;
	char	   *dbname;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	if (!queue_claim_slot(dbid))
		proc_exit(0);			/* someone else serves this database */
	before_shmem_exit(queue_release_slot, (Datum) 0);

	BackgroundWorkerInitializeConnectionByOid(dbid, InvalidOid, 0);
	/* a GUC, not just the activity entry: handlers' changes get reverted to it */
	SetConfigOption("application_name", "pacelc worker", PGC_USERSET, PGC_S_OVERRIDE);
	StartTransactionCommand();
	dbname = get_database_name(dbid);
	if (dbname == NULL)
		proc_exit(0);			/* dropped meanwhile */
	dbname = MemoryContextStrdup(TopMemoryContext, dbname);
	CommitTransactionCommand();

	/*
	 * If DDL such as DROP EXTENSION deadlocks with a round, let the worker
	 * be the one that notices and gives way, not the user's command.
	 */
	SetConfigOption("deadlock_timeout", "10ms", PGC_SUSET, PGC_S_OVERRIDE);

	worker_settings_apply();

	round_context = AllocSetContextCreate(TopMemoryContext, "pacelc worker round",
										  ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		long		sleep_ms = worker_naptime_s * 1000L;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (!database_wanted(dbname))
				proc_exit(0);	/* pacelc.databases no longer names us */
		}

		MemoryContextSwitchTo(round_context);
		PG_TRY();
		{
			sleep_ms = worker_round(&last_full);
		}
		PG_CATCH();
		{
			/* log it, clean up, and try again after a pause */
			MemoryContextSwitchTo(round_context);
			EmitErrorReport();
			FlushErrorState();
			AbortOutOfAnyTransaction();
			check_extension = true;
			sleep_ms = 1000;
		}
		PG_END_TRY();
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(round_context);

		queue_set_next_wakeup(TimestampTzPlusMilliseconds(GetCurrentTimestamp(), sleep_ms));
		if (sleep_ms > 0)
		{
			/* woken: maybe by DROP EXTENSION, then leave (DROP DATABASE waits) */
			if (WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						  sleep_ms, PG_WAIT_EXTENSION) & WL_LATCH_SET)
				check_extension = true;
			ResetLatch(MyLatch);
		}
	}
}
