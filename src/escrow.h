/*-------------------------------------------------------------------------
 *
 * escrow.h
 *		The escrow counters of stock reservation (escrow.c), as the
 *		SQL-callable functions of stock.c use them.
 *
 * An entry is one SKU's counter in shared memory; a generation tells the
 * entry a caller acquired from a later tenant of the same slot.  Takes
 * apply at once and go back if the (sub)transaction aborts; increases
 * apply when the transaction commits.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PACELC_ESCROW_H
#define PACELC_ESCROW_H

#include "postgres.h"

/* PACELC_SKU_MAXLEN, the longest SKU, is support.h's (one place for limits) */
#include "support.h"

typedef struct StockEntry StockEntry;

/* _PG_init and the shared memory hooks (pacelc.c) */
extern void pacelc_stock_init(void);
extern Size pacelc_stock_shmem_size(void);
extern void pacelc_stock_shmem_request(void);
extern void pacelc_stock_shmem_startup(void);

extern void pacelc_stock_check_shmem(void);
extern Oid	pacelc_skus_relid(void);
extern void pacelc_raise_unknown_sku(const char *sku);
extern StockEntry *pacelc_stock_acquire(const char *sku, bool create,
										uint64 *generation);

extern bool pacelc_escrow_take(StockEntry *entry, uint64 generation, int64 qty);
extern void pacelc_escrow_add_on_commit(StockEntry *entry, uint64 generation,
										int64 qty, bool mark_exists);
extern int64 pacelc_escrow_own_pending(StockEntry *entry, uint64 generation);
extern int	pacelc_escrow_mark(void);
extern void pacelc_escrow_undo_to(int mark);

extern int64 pacelc_escrow_counter(StockEntry *entry);
extern bool pacelc_escrow_sku_exists(StockEntry *entry);
extern void pacelc_escrow_settle_finished(void);
extern bool pacelc_escrow_read_counter(const char *sku, Oid relid, int64 *avail);

#endif							/* PACELC_ESCROW_H */
