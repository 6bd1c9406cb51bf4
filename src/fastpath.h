/*-------------------------------------------------------------------------
 *
 * fastpath.h
 *		What an INSERT statement would enforce on a row pacelc writes into
 *		its own tables directly (fastpath.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PACELC_FASTPATH_H
#define PACELC_FASTPATH_H

#include "executor/tuptable.h"
#include "nodes/execnodes.h"
#include "utils/relcache.h"
#include "utils/snapshot.h"

/*
 * What the direct way needs to know about one table, found once per
 * relcache build: its shape and its CHECK constraints, compiled.  A caller
 * keeps one in a static variable, zeroed.
 */
typedef struct PacelcRowChecks
{
	Oid			relid;			/* InvalidOid: to be (re)compiled */
	uint64		builds;			/* counts the (re)compilations */
	bool		registered;
	bool		shape_ok;		/* plain table, no rule, trigger, generated
								 * column */
	bool		pure;			/* its CHECK constraints and index
								 * expressions call built-in immutable
								 * functions only */
	MemoryContext cxt;
	int			ncheck;
	ExprState **checks;
	Expr	  **exprs;			/* the checks planned, for a call that
								 * compiles its own (not pure) */
	char	  **names;
	ExprContext *econtext;
	/* its indexes, built at the first pacelc_fastpath_open_indices() */
	bool		indexes_built;
	bool		indexes_speculative;	/* with ON CONFLICT's information */
	int			nindexes;
	Oid		   *index_oids;
	IndexInfo **index_infos;	/* predicates and expressions compiled */
} PacelcRowChecks;

extern bool pacelc_fastpath_shape_ok(PacelcRowChecks *rc, Relation rel);
extern bool pacelc_fastpath_insert_ok(PacelcRowChecks *rc, Relation rel);
extern void pacelc_fastpath_check_row(PacelcRowChecks *rc, Relation rel,
									  TupleTableSlot *slot);
extern void pacelc_fastpath_open_indices(PacelcRowChecks *rc,
										 ResultRelInfo *rri, bool speculative);
extern bool pacelc_fastpath_lookup(Relation heap, Relation index, text *key,
								   Snapshot snapshot, TupleTableSlot *slot);

#endif							/* PACELC_FASTPATH_H */
