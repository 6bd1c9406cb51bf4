/*-------------------------------------------------------------------------
 *
 * fastpath.c
 *		What an INSERT statement would do to a row that pacelc writes into
 *		its own tables directly (table_tuple_insert and the indexes, as
 *		COPY does), so that the direct way never accepts a row the
 *		statement would refuse.
 *
 * enqueue (queue.c) and reserve (reservation_rows.c) write their rows
 * without an INSERT statement: no plan, no executor start.  Those tables
 * are the extension's, but a superuser may still change them: add a rule,
 * a trigger, a NOT NULL, or replace a CHECK constraint by one of the same
 * name.  pacelc_fastpath_insert_ok() says when the direct way may not be
 * taken at all (the caller then runs its SQL statement, which does what
 * the table asks), with what depends on the relcache entry alone
 * (relkind, rules, triggers, generated columns) found once per relcache
 * build, in a PacelcRowChecks; pacelc_fastpath_check_row() enforces the
 * NOT NULL and CHECK constraints the table has now, as ExecConstraints()
 * does, with the expressions compiled once per relcache build of the table
 * instead of once per row.  pacelc_fastpath_shape_ok() is the relcache
 * part alone, for a direct read.  pacelc_fastpath_open_indices() is
 * ExecOpenIndices() with the IndexInfos (partial indexes' predicates and
 * index expressions compiled) kept the same way.
 *
 * fastpath.c calls only support.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/tableam.h"
#include "access/tupdesc.h"
#include "access/transam.h"
#include "catalog/index.h"
#include "catalog/pg_index.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/syscache.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"

#include "fastpath.h"
#include "support.h"

#define MAX_CHECK_SETS	8

/* every PacelcRowChecks in use, to be marked stale on invalidation */
static PacelcRowChecks *check_sets[MAX_CHECK_SETS];
static int	ncheck_sets = 0;
static bool callback_registered = false;

/* Is relid one of the indexes whose IndexInfo rc keeps? */
static bool
keeps_index(PacelcRowChecks *rc, Oid relid)
{
	int			i;

	if (!rc->indexes_built)
		return false;
	for (i = 0; i < rc->nindexes; i++)
		if (rc->index_oids[i] == relid)
			return true;
	return false;
}

/*
 * The table or one of its indexes changed (an index created or dropped,
 * its pg_index row updated: ready for inserts, valid...): everything kept
 * about it is built again at its next use.
 */
static void
fastpath_relcache_callback(Datum arg, Oid relid)
{
	int			i;

	for (i = 0; i < ncheck_sets; i++)
	{
		if (!OidIsValid(relid) || check_sets[i]->relid == relid ||
			keeps_index(check_sets[i], relid))
			check_sets[i]->relid = InvalidOid;
	}
}

/*
 * A function changed: a CHECK expression may have inlined its old body
 * (expression_planner inlines SQL functions), which an INSERT statement
 * would no longer run.  Every set is compiled again at its next use.
 */
static void
fastpath_proc_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	int			i;

	for (i = 0; i < ncheck_sets; i++)
		check_sets[i]->relid = InvalidOid;
}

/*
 * Does an INSERT statement into this table do more than insert the row and
 * its index entries: is it something else than a plain table, or has it a
 * rule, a trigger or a generated column?  Depends on the relcache entry
 * only.
 */
static bool
table_shape_ok(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);

	if (rel->rd_rel->relkind != RELKIND_RELATION ||
		rel->trigdesc != NULL || rel->rd_rules != NULL)
		return false;
	if (desc->constr != NULL && desc->constr->has_generated_stored)
		return false;
#if PG_VERSION_NUM >= 180000
	if (desc->constr != NULL && desc->constr->has_generated_virtual)
		return false;
#endif
	return true;
}

/*
 * Would the current user's INSERT go without row security and be allowed?
 * Depends on the user, its role attributes and settings too, so it is
 * asked at each insert.
 */
static bool
table_user_ok(Relation rel)
{
	if (check_enable_rls(RelationGetRelid(rel), InvalidOid, true) == RLS_ENABLED)
		return false;
	return pg_class_aclcheck(RelationGetRelid(rel), GetUserId(),
							 ACL_INSERT) == ACLCHECK_OK;
}

/*
 * Is funcid one of pacelc's own length checks (support.c), which the CHECK
 * constraints of its tables call: C, immutable, in this library?  They
 * compare a length, resolve no name and run no SQL.
 */
static bool
pacelc_length_check(Oid funcid)
{
	static const char *const symbols[] = {
		"pacelc_private_valid_sku", "pacelc_private_valid_key",
		"pacelc_private_valid_queue_name",
	};
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	Form_pg_proc proc;
	bool		ours = false;

	if (!HeapTupleIsValid(tup))
		return false;
	proc = (Form_pg_proc) GETSTRUCT(tup);
	if (proc->prolang == ClanguageId && proc->provolatile == PROVOLATILE_IMMUTABLE)
	{
		bool		binnull,
					srcnull;
		Datum		bin = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_probin, &binnull);
		Datum		src = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_prosrc, &srcnull);
		int			i;

		if (!binnull && !srcnull &&
			strcmp(TextDatumGetCString(bin), "$libdir/pacelc") == 0)
		{
			char	   *name = TextDatumGetCString(src);

			for (i = 0; i < lengthof(symbols) && !ours; i++)
				ours = strcmp(name, symbols[i]) == 0;
		}
	}
	ReleaseSysCache(tup);
	return ours;
}

/*
 * A function a pure expression may call: built in and immutable, or one
 * of pacelc's length checks.
 */
static bool
impure_function(Oid funcid, void *context)
{
	if (funcid >= FirstNormalObjectId)
		return !pacelc_length_check(funcid);
	return func_volatile(funcid) != PROVOLATILE_IMMUTABLE;
}

static bool
impure_walker(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (check_functions_in_node(node, impure_function, context))
		return true;

	/*
	 * A cast to a domain runs the domain's CHECK constraints, which may call
	 * anything (and be added later, without a relcache invalidation of the
	 * table): a DBA's code, even one that runs pacelc again and re-enters
	 * the expression being evaluated.
	 */
	if (IsA(node, CoerceToDomain))
		return true;
	return expression_tree_walker(node, impure_walker, context);
}

/*
 * Do the table's CHECK constraints and its indexes' expressions and
 * predicates (the code an insert runs besides pacelc's) call built-in
 * immutable functions only?  Those resolve no name and run no SQL, so an
 * insert needs no pinned search path for them; a function of a DBA's (an
 * SQL function's body is parsed when it is inlined or run, with the search
 * path in force) makes the caller pin it (pacelc_pin_owner_path()).
 * Reads the stored trees: nothing is planned or inlined here.
 */
static bool
table_pure(Relation rel)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;
	List	   *indexes;
	ListCell   *lc;
	bool		pure = true;
	int			i;

	if (constr != NULL)
		for (i = 0; i < constr->num_check && pure; i++)
			pure = !impure_walker(stringToNode(constr->check[i].ccbin), NULL);
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		HeapTuple	tup;
		Datum		d;
		bool		isnull;

		if (!pure)
			break;
		tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));
		if (!HeapTupleIsValid(tup))
			elog(ERROR, "cache lookup failed for index %u", lfirst_oid(lc));
		d = SysCacheGetAttr(INDEXRELID, tup, Anum_pg_index_indexprs, &isnull);
		if (!isnull)
			pure = !impure_walker(stringToNode(TextDatumGetCString(d)), NULL);
		d = SysCacheGetAttr(INDEXRELID, tup, Anum_pg_index_indpred, &isnull);
		if (!isnull && pure)
			pure = !impure_walker(stringToNode(TextDatumGetCString(d)), NULL);
		ReleaseSysCache(tup);
	}
	list_free(indexes);
	return pure;
}

/* Compiles the table's CHECK constraints into rc (a new relcache build). */
static void
row_checks_load(PacelcRowChecks *rc, Relation rel)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;
	MemoryContext old;
	int			i;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(fastpath_relcache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(PROCOID, fastpath_proc_callback, (Datum) 0);
		callback_registered = true;
	}
	/* (an error below leaves no kept index OIDs in freed memory) */
	rc->indexes_built = false;
	if (!rc->registered)
	{
		if (ncheck_sets >= MAX_CHECK_SETS)
			elog(ERROR, "too many pacelc fast-path check sets");
		check_sets[ncheck_sets++] = rc;
		rc->registered = true;
	}

	/*
	 * A call may still use the old build: a DBA's code that an insert runs
	 * (an index's operator class function, say) may make it stale and run
	 * pacelc again, which builds anew, while the outer insert has indexes
	 * left to write with the old build's IndexInfos.  The old build goes
	 * with the transaction, not now.
	 */
	if (rc->cxt != NULL)
		MemoryContextSetParent(rc->cxt, TopTransactionContext);
	rc->cxt = AllocSetContextCreate(TopMemoryContext, "pacelc fast path checks",
									ALLOCSET_SMALL_SIZES);

	/* before the planner inlines a DBA's SQL function, parsing its body */
	rc->pure = table_pure(rel);
	if (!rc->pure)
		pacelc_pin_owner_path();
	old = MemoryContextSwitchTo(rc->cxt);
	rc->ncheck = 0;
	rc->checks = NULL;
	rc->exprs = NULL;
	rc->names = NULL;
	if (constr != NULL && constr->num_check > 0)
	{
		rc->checks = palloc(sizeof(ExprState *) * constr->num_check);
		rc->exprs = palloc(sizeof(Expr *) * constr->num_check);
		rc->names = palloc(sizeof(char *) * constr->num_check);
		for (i = 0; i < constr->num_check; i++)
		{
			Expr	   *expr;

#if PG_VERSION_NUM >= 180000
			if (!constr->check[i].ccenforced)
				continue;
#endif
			expr = expression_planner((Expr *) stringToNode(constr->check[i].ccbin));
			rc->exprs[rc->ncheck] = expr;
			rc->checks[rc->ncheck] = ExecInitExpr(expr, NULL);
			rc->names[rc->ncheck] = pstrdup(constr->check[i].ccname);
			rc->ncheck++;
		}
	}
	rc->econtext = CreateStandaloneExprContext();
	MemoryContextSwitchTo(old);
	rc->shape_ok = table_shape_ok(rel);
	rc->relid = RelationGetRelid(rel);
	rc->builds++;
}

/*
 * table_shape_ok() for rel, as found at its current relcache build and
 * kept in rc: the check for a direct read (an index probe) of the table.
 */
bool
pacelc_fastpath_shape_ok(PacelcRowChecks *rc, Relation rel)
{
	if (rc->relid != RelationGetRelid(rel))
		row_checks_load(rc, rel);
	return rc->shape_ok;
}

/*
 * May rows go into this table directly?  Not when an INSERT statement
 * would do more than insert the row and its index entries: a rule, a
 * trigger, row security applying to the current user, a generated column;
 * nor when the current user (the extension's owner, acting) may not insert
 * into it: then the statement raises what PostgreSQL raises.  The table's
 * shape is kept in rc (the one later given to pacelc_fastpath_check_row
 * for the same table).
 */
bool
pacelc_fastpath_insert_ok(PacelcRowChecks *rc, Relation rel)
{
	if (!pacelc_fastpath_shape_ok(rc, rel))
		return false;
	/* the insert will run a DBA's code: under the owner's search path */
	if (!rc->pure)
		pacelc_pin_owner_path();
	return table_user_ok(rel);
}

/*
 * Raises what the executor raises when the row in slot breaks a NOT NULL
 * or CHECK constraint of rel (23502, 23514).
 */
void
pacelc_fastpath_check_row(PacelcRowChecks *rc, Relation rel,
						  TupleTableSlot *slot)
{
	TupleDesc	desc = RelationGetDescr(rel);
	ExprState **checks;
	ExprContext *econtext;
	char	  **names;
	int			ncheck;
	bool		own;
	int			i;

	if (rc->relid != RelationGetRelid(rel))
		row_checks_load(rc, rel);
	if (!rc->pure)
		pacelc_pin_owner_path();
	if (desc->constr != NULL && desc->constr->has_not_null)
	{
		for (i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			if (att->attnotnull && !att->attisdropped && slot_attisnull(slot, i + 1))
				ereport(ERROR,
						(errcode(ERRCODE_NOT_NULL_VIOLATION),
						 errmsg("null value in column \"%s\" of relation \"%s\" violates not-null constraint",
								NameStr(att->attname), RelationGetRelationName(rel)),
						 errtablecol(rel, i + 1)));
		}
	}
	if (rc->ncheck == 0)
		return;

	/*
	 * (what the build has now: a check calling a DBA's code may build anew
	 * meanwhile, the old build staying until the end of the transaction)
	 */
	ncheck = rc->ncheck;
	names = rc->names;
	checks = rc->checks;
	econtext = rc->econtext;
	own = !rc->pure;
	if (own)
	{
		/*
		 * A DBA's code in a check may run pacelc again, which checks its own
		 * row meanwhile: this row gets its own compiled checks and expression
		 * context, as each INSERT statement does.
		 */
		Expr	  **exprs = rc->exprs;

		checks = palloc(sizeof(ExprState *) * ncheck);
		for (i = 0; i < ncheck; i++)
			checks[i] = ExecInitExpr(exprs[i], NULL);
		econtext = CreateStandaloneExprContext();
	}
	econtext->ecxt_scantuple = slot;
	for (i = 0; i < ncheck; i++)
	{
		bool		ok = ExecCheck(checks[i], econtext);

		ResetExprContext(econtext);
		if (!ok)
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("new row for relation \"%s\" violates check constraint \"%s\"",
							RelationGetRelationName(rel), names[i]),
					 errtableconstraint(rel, names[i])));
	}
	econtext->ecxt_scantuple = NULL;
	if (own)
	{
		FreeExprContext(econtext, true);
		pfree(checks);
	}
}

/*
 * Builds, in rc's memory, what ExecOpenIndices() builds per statement: an
 * IndexInfo per index of rel (with ON CONFLICT's information when
 * speculative), its predicate and expressions compiled as
 * ExecInsertIndexTuples() would compile them at the first row.  indexes
 * are the index OIDs, in RelationGetIndexList() order, opened.
 */
static void
index_infos_load(PacelcRowChecks *rc, List *oids, Relation *indexes,
				 bool speculative)
{
	MemoryContext old = MemoryContextSwitchTo(rc->cxt);
	int			i;

	rc->nindexes = list_length(oids);
	rc->index_oids = palloc(sizeof(Oid) * Max(rc->nindexes, 1));
	rc->index_infos = palloc(sizeof(IndexInfo *) * Max(rc->nindexes, 1));
	for (i = 0; i < rc->nindexes; i++)
	{
		IndexInfo  *ii = BuildIndexInfo(indexes[i]);
		ListCell   *lc;

		if (speculative && ii->ii_Unique && !indexes[i]->rd_index->indisexclusion)
			BuildSpeculativeIndexInfo(indexes[i], ii);
		if (ii->ii_Predicate != NIL)
			ii->ii_PredicateState =
				ExecInitQual((List *) expression_planner((Expr *) ii->ii_Predicate), NULL);
		ii->ii_ExpressionsState = NIL;
		foreach(lc, ii->ii_Expressions)
			ii->ii_ExpressionsState =
				lappend(ii->ii_ExpressionsState,
						ExecInitExpr(expression_planner((Expr *) lfirst(lc)), NULL));
		rc->index_oids[i] = list_nth_oid(oids, i);
		rc->index_infos[i] = ii;
	}
	rc->indexes_speculative = speculative;
	rc->indexes_built = true;
	MemoryContextSwitchTo(old);
}

/* Lets go of the indexes opened (oids) and calls ExecOpenIndices(). */
static void
open_indices_as_executor(ResultRelInfo *rri, Relation *indexes, List *oids,
						 bool speculative)
{
	int			i;

	for (i = 0; i < list_length(oids); i++)
		index_close(indexes[i], RowExclusiveLock);
	list_free(oids);
	ExecOpenIndices(rri, speculative);
}

/*
 * ExecOpenIndices(rri, speculative) for the table rc describes (rri's),
 * with the IndexInfos built once per relcache build of the table and its
 * indexes instead of once per row: per call, BuildIndexInfo() and the
 * compiling of a partial index's predicate cost more than inserting the
 * index entry.  Each call gets its own shallow copy of them (an index AM
 * keeps per-statement state in it).  A table whose index predicates or
 * expressions call anything but built-in immutable functions (which could
 * run pacelc again and re-enter an expression being evaluated) takes
 * ExecOpenIndices().  The copies point into rc's memory, rebuilt at the
 * next pacelc_fastpath_* call on rc after an invalidation: the caller
 * calls none before ExecCloseIndices(rri).
 */
void
pacelc_fastpath_open_indices(PacelcRowChecks *rc, ResultRelInfo *rri,
							 bool speculative)
{
	Relation	rel = rri->ri_RelationDesc;
	List	   *oids;
	Relation   *indexes;
	IndexInfo **infos;
	ListCell   *lc;
	bool		changed;
	int			n,
				i;

	if (rc->relid != RelationGetRelid(rel))
		row_checks_load(rc, rel);
	if (!rc->pure)
	{
		ExecOpenIndices(rri, speculative);
		return;
	}
	rri->ri_NumIndices = 0;
	if (!RelationGetForm(rel)->relhasindex)
		return;
	oids = RelationGetIndexList(rel);
	n = list_length(oids);
	if (n == 0)
		return;
	indexes = palloc(sizeof(Relation) * n);
	infos = palloc(sizeof(IndexInfo *) * n);
	i = 0;
	foreach(lc, oids)
		indexes[i++] = index_open(lfirst_oid(lc), RowExclusiveLock);

	/*
	 * The locks may have processed an invalidation; or the indexes changed
	 * under a build of the table that kept others (an invalidation not seen
	 * yet): either way the table and its indexes are judged again.
	 */
	changed = rc->indexes_built && rc->nindexes != n;
	for (i = 0; i < n && rc->indexes_built && !changed; i++)
		changed = rc->index_oids[i] != list_nth_oid(oids, i) ||
			rc->index_infos[i]->ii_ReadyForInserts != indexes[i]->rd_index->indisready;
	if (rc->relid != RelationGetRelid(rel) || changed)
		row_checks_load(rc, rel);
	if (!rc->pure)
	{
		/* a new build says otherwise: the executor's way after all */
		open_indices_as_executor(rri, indexes, oids, speculative);
		return;
	}
	if (!rc->indexes_built || (speculative && !rc->indexes_speculative))
		index_infos_load(rc, oids, indexes, speculative);
	for (i = 0; i < n; i++)
	{
		IndexInfo  *ii = makeNode(IndexInfo);

		memcpy(ii, rc->index_infos[i], sizeof(IndexInfo));
		ii->ii_Context = CurrentMemoryContext;
		ii->ii_AmCache = NULL;
		infos[i] = ii;
	}
	list_free(oids);
	rri->ri_NumIndices = n;
	rri->ri_IndexRelationDescs = indexes;
	rri->ri_IndexRelationInfo = infos;
}

/*
 * Reads the row whose text key (the first column of a unique btree index)
 * equals key, as one index probe with the given snapshot, into slot (a
 * slot of heap's).  What a cached plan's "WHERE k = $1" would find, without
 * the executor: a per-call lookup on a hot path.  False: no such row.
 */
bool
pacelc_fastpath_lookup(Relation heap, Relation index, text *key,
					   Snapshot snapshot, TupleTableSlot *slot)
{
	IndexScanDesc scan;
	bool		found;

	scan = pacelc_text_index_scan(heap, index, PointerGetDatum(key), snapshot);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	index_endscan(scan);
	return found;
}
