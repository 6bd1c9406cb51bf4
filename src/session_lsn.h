/*-------------------------------------------------------------------------
 *
 * session_lsn.h
 *		LSN session tokens for reads on standbys (SPEC section 2).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PACELC_SESSION_LSN_H
#define PACELC_SESSION_LSN_H

extern void pacelc_session_lsn_init(void);
extern Size pacelc_session_lsn_shmem_size(void);
extern void pacelc_session_lsn_shmem_startup(void);

#endif							/* PACELC_SESSION_LSN_H */
