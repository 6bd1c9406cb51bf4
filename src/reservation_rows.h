/*-------------------------------------------------------------------------
 *
 * reservation_rows.h
 *		The reserve path's table work without SPI (reservation_rows.c):
 *		each function returns false when its fast path does not apply, and
 *		the caller then runs its SPI statement.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PACELC_RESERVATION_ROWS_H
#define PACELC_RESERVATION_ROWS_H

#include "datatype/timestamp.h"
#include "utils/array.h"

extern bool pacelc_reservation_insert(const char *sku, int64 qty, Interval *ttl,
									  text *key, struct varlena *on_expire, Oid owner,
									  int64 *id, TimestampTz *expires_at);
extern bool pacelc_key_visible(text *key);
extern bool pacelc_key_insert(text *key, ArrayType *skus, ArrayType *qtys,
							  ArrayType *ids, Oid owner, bool *inserted);

#endif							/* PACELC_RESERVATION_ROWS_H */
