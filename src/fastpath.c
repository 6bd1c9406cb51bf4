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
 * name.  pacelc_fastpath_table_ok() says when the direct way may not be
 * taken at all (the caller then runs its SQL statement, which does what
 * the table asks); pacelc_fastpath_check_row() enforces the NOT NULL and
 * CHECK constraints the table has now, as ExecConstraints() does, with the
 * expressions compiled once per relcache build of the table instead of
 * once per row.
 *
 * fastpath.c calls no other pacelc file.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/tableam.h"
#include "access/tupdesc.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "utils/acl.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/syscache.h"
#include "utils/fmgroids.h"

#include "fastpath.h"

#define MAX_CHECK_SETS	8

/* every PacelcRowChecks in use, to be marked stale on invalidation */
static PacelcRowChecks *check_sets[MAX_CHECK_SETS];
static int	ncheck_sets = 0;
static bool callback_registered = false;

static void
fastpath_relcache_callback(Datum arg, Oid relid)
{
	int			i;

	for (i = 0; i < ncheck_sets; i++)
	{
		if (!OidIsValid(relid) || check_sets[i]->relid == relid)
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
 * May rows go into this table directly?  Not when an INSERT statement
 * would do more than insert the row and its index entries: a rule, a
 * trigger, row security applying to the current user, a generated column;
 * nor when the current user (the extension's owner, acting) may not insert
 * into it: then the statement raises what PostgreSQL raises.
 */
bool
pacelc_fastpath_table_ok(Relation rel)
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
	if (check_enable_rls(RelationGetRelid(rel), InvalidOid, true) == RLS_ENABLED)
		return false;
	return pg_class_aclcheck(RelationGetRelid(rel), GetUserId(),
							 ACL_INSERT) == ACLCHECK_OK;
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
	if (!rc->registered)
	{
		if (ncheck_sets >= MAX_CHECK_SETS)
			elog(ERROR, "too many pacelc fast-path check sets");
		check_sets[ncheck_sets++] = rc;
		rc->registered = true;
	}
	if (rc->cxt == NULL)
		rc->cxt = AllocSetContextCreate(TopMemoryContext, "pacelc fast path checks",
										ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(rc->cxt);

	old = MemoryContextSwitchTo(rc->cxt);
	rc->ncheck = 0;
	rc->checks = NULL;
	rc->names = NULL;
	if (constr != NULL && constr->num_check > 0)
	{
		rc->checks = palloc(sizeof(ExprState *) * constr->num_check);
		rc->names = palloc(sizeof(char *) * constr->num_check);
		for (i = 0; i < constr->num_check; i++)
		{
			Expr	   *expr;

#if PG_VERSION_NUM >= 180000
			if (!constr->check[i].ccenforced)
				continue;
#endif
			expr = expression_planner((Expr *) stringToNode(constr->check[i].ccbin));
			rc->checks[rc->ncheck] = ExecInitExpr(expr, NULL);
			rc->names[rc->ncheck] = pstrdup(constr->check[i].ccname);
			rc->ncheck++;
		}
	}
	rc->econtext = CreateStandaloneExprContext();
	MemoryContextSwitchTo(old);
	rc->relid = RelationGetRelid(rel);
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
	int			i;

	if (rc->relid != RelationGetRelid(rel))
		row_checks_load(rc, rel);
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
	rc->econtext->ecxt_scantuple = slot;
	for (i = 0; i < rc->ncheck; i++)
	{
		bool		ok = ExecCheck(rc->checks[i], rc->econtext);

		ResetExprContext(rc->econtext);
		if (!ok)
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("new row for relation \"%s\" violates check constraint \"%s\"",
							RelationGetRelationName(rel), rc->names[i]),
					 errtableconstraint(rel, rc->names[i])));
	}
	rc->econtext->ecxt_scantuple = NULL;
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
	ScanKeyData skey;
	bool		found;

	ScanKeyInit(&skey, 1, BTEqualStrategyNumber, F_TEXTEQ, PointerGetDatum(key));
	skey.sk_collation = index->rd_indcollation[0];
#if PG_VERSION_NUM >= 180000
	scan = index_beginscan(heap, index, snapshot, NULL, 1, 0);
#else
	scan = index_beginscan(heap, index, snapshot, 1, 0);
#endif
	index_rescan(scan, &skey, 1, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	index_endscan(scan);
	return found;
}
