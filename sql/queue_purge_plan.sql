-- purge_done() deletes the handled messages' errors through their ids
-- whatever the statistics said when its plan was made: the worker keeps
-- the generic plan (enable_seqscan off) made while message_errors was
-- empty, and a plan walking the whole error table per purge read every
-- dead letter's errors every pacelc.worker_naptime.
CREATE EXTENSION pacelc;
SET enable_seqscan = off;
SET plan_cache_mode = force_generic_plan;
ANALYZE pacelc.messages;
ANALYZE pacelc.message_errors;
-- planned (and kept) now, with the statistics of empty tables
SELECT pacelc.purge_done('1 hour');
SELECT pacelc.create_queue('purge_plan');
-- one handled message to purge (younger than the worker's retention),
-- and 300 dead letters with their errors
INSERT INTO pacelc.messages (queue, payload, state, attempts, done_at)
SELECT 'purge_plan', '{}', CASE WHEN i = 1 THEN 'done' ELSE 'dead' END, 1,
       CASE WHEN i = 1 THEN now() - interval '2 hours' END
  FROM generate_series(1, 300) i;
INSERT INTO pacelc.message_errors (message_id, attempt, error)
SELECT id, 1, 'failed' FROM pacelc.messages WHERE queue = 'purge_plan';
BEGIN;
SELECT pacelc.purge_done('1 hour');
-- the purged message's error entry, not the 300 of the table
SELECT pg_stat_get_xact_tuples_returned('pacelc.message_errors_pkey'::regclass) AS error_entries_read;
SELECT count(*) AS errors_left FROM pacelc.message_errors;
ROLLBACK;
DROP EXTENSION pacelc;
