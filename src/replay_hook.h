/*-------------------------------------------------------------------------
 *
 * replay_hook.h
 *		A callback in the startup process after each replayed WAL record.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PACELC_REPLAY_HOOK_H
#define PACELC_REPLAY_HOOK_H

#include "access/xlogreader.h"

/* Before the first record's redo; returns true once it has done its work. */
typedef bool (*pacelc_replay_start_cb) (void);

/* After each record's redo. */
typedef void (*pacelc_replay_record_cb) (XLogReaderState *record);

extern bool pacelc_replay_hook_install(pacelc_replay_start_cb start,
									   pacelc_replay_record_cb after_record);

#endif							/* PACELC_REPLAY_HOOK_H */
