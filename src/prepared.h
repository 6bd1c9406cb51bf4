/*-------------------------------------------------------------------------
 *
 * prepared.h
 *		The escrow of prepared transactions (prepared.c), for escrow.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PACELC_PREPARED_H
#define PACELC_PREPARED_H

#include "postgres.h"

#include "storage/lwlock.h"
#include "utils/snapshot.h"

/*
 * What a prepared transaction did to one escrow entry: units it took from
 * the counter (given back if it rolls back) and increases net of the takes
 * out of them (applied if it commits).  entry is a StockEntry of escrow.c
 * (shared memory has the same address in every backend).
 */
typedef struct PreparedLine
{
	TransactionId xid;
	void	   *entry;
	uint64		generation;
	int64		taken;
	int64		pending;
	bool		created;		/* it created the SKU row */
	bool		pinned;			/* it holds a pin on the entry */
	bool		commit;			/* when claimed: the transaction committed */
} PreparedLine;

extern Size pacelc_prepared_shmem_size(void);
extern void pacelc_prepared_shmem_request(void);
extern void pacelc_prepared_shmem_startup(void);
extern bool pacelc_prepared_enabled(void);
extern void pacelc_prepared_lock(void);
extern void pacelc_prepared_unlock(void);

/* the caller holds the lock for these */
extern bool pacelc_prepared_begin(TransactionId xid, bool recovered);
extern bool pacelc_prepared_add_line(const PreparedLine *line);
extern void pacelc_prepared_mark_prepared(TransactionId xid);
extern void pacelc_prepared_forget(TransactionId xid);
extern void pacelc_prepared_drop_entry(void *entry, uint64 generation);
extern int	pacelc_prepared_claim_finished(PreparedLine **lines);
extern bool pacelc_prepared_has_finished(void);

/* what transactions prepared before a restart did to a SKU */
extern int	pacelc_prepared_in_doubt(Oid dbid, TransactionId **xids);
extern void pacelc_prepared_sku_deltas(Oid skus_relid, const char *sku,
									   Snapshot snap, const TransactionId *xids,
									   int nxids, int64 *delta, bool *created,
									   bool *seen);

#endif							/* PACELC_PREPARED_H */
