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
 * The CHECK constraints of one table, compiled once per relcache build.
 * A caller keeps one in a static variable, zeroed.
 */
typedef struct PacelcRowChecks
{
	Oid			relid;			/* InvalidOid: to be (re)compiled */
	bool		registered;
	MemoryContext cxt;
	int			ncheck;
	ExprState **checks;
	char	  **names;
	ExprContext *econtext;
} PacelcRowChecks;

extern bool pacelc_fastpath_table_ok(Relation rel);
extern void pacelc_fastpath_check_row(PacelcRowChecks *rc, Relation rel,
									  TupleTableSlot *slot);
extern bool pacelc_fastpath_lookup(Relation heap, Relation index, text *key,
								   Snapshot snapshot, TupleTableSlot *slot);

#endif							/* PACELC_FASTPATH_H */
