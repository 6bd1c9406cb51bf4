/*-------------------------------------------------------------------------
 *
 * queue.c
 *		(placeholder: filled in by its issue)
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pacelc.h"

void
queue_init(void)
{
}

Size
queue_shmem_size(void)
{
	return 0;
}

void
queue_shmem_request(void)
{
}

void
queue_shmem_startup(void)
{
}
