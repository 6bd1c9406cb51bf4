/*-------------------------------------------------------------------------
 *
 * session_lsn.c
 *		(placeholder: filled in by its issue)
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pacelc.h"

void
session_lsn_init(void)
{
}

Size
session_lsn_shmem_size(void)
{
	return 0;
}

void
session_lsn_shmem_request(void)
{
}

void
session_lsn_shmem_startup(void)
{
}
