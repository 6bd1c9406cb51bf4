/*-------------------------------------------------------------------------
 *
 * queue.h
 *		The compensation queue's C: enqueue(), queue rights, the queue lock.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PACELC_QUEUE_H
#define PACELC_QUEUE_H

extern bool pacelc_queue_allowed(Oid caller, Oid owner, struct varlena *queue,
								 bool consume);
extern void pacelc_queue_denied(struct varlena *queue, bool consume);

#endif							/* PACELC_QUEUE_H */
