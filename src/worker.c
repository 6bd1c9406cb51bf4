/*-------------------------------------------------------------------------
 *
 * worker.c
 *		(placeholder: the launcher and per-database workers)
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pacelc.h"

void
worker_init(void)
{
}
