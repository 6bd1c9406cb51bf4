/*-------------------------------------------------------------------------
 *
 * inflight.h
 *		The worker's record of the batch whose handlers are running: a small
 *		file per worker that outlives a crash of the worker or the server,
 *		so that an attempt that never finished is still counted.
 *
 * inflight.c calls no other pacelc file; worker.c is its only caller.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PACELC_INFLIGHT_H
#define PACELC_INFLIGHT_H

/* One message of the batch: its id and its attempts before this one. */
typedef struct PacelcInflightEntry
{
	int64		id;
	int32		attempts;
	int32		pad;			/* zero */
} PacelcInflightEntry;

extern void pacelc_inflight_open(Oid dbid, int index);
extern void pacelc_inflight_close(void);
extern bool pacelc_inflight_pending(void);
extern bool pacelc_inflight_write(Oid relid, const PacelcInflightEntry *entries, int n);
extern void pacelc_inflight_reached(int k);
extern void pacelc_inflight_settle(void);
extern void pacelc_inflight_clear(void);
extern int	pacelc_inflight_collect(Oid dbid, Oid relid, bool others,
									PacelcInflightEntry **entries);
extern void pacelc_inflight_release(bool recorded);

#endif							/* PACELC_INFLIGHT_H */
