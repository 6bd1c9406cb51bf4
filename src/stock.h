/*-------------------------------------------------------------------------
 *
 * stock.h
 *		Escrow stock reservation (SPEC section 1).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PACELC_STOCK_H
#define PACELC_STOCK_H

extern void pacelc_stock_init(void);
extern Size pacelc_stock_shmem_size(void);
extern void pacelc_stock_shmem_request(void);
extern void pacelc_stock_shmem_startup(void);

#endif							/* PACELC_STOCK_H */
