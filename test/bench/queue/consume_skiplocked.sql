-- One polling consumer round: take up to :batch jobs (SKIP LOCKED), run the
-- "handler" (one small insert each) and delete them in one transaction;
-- sleep :poll_ms when the table was empty.  DELETE ... USING the locked rows
-- (index lookups), not DELETE ... WHERE id IN (...), which the planner may
-- turn into a hash join over a sequential scan of the whole backlog.
WITH j AS (
	SELECT id, payload FROM bq ORDER BY id LIMIT :batch FOR UPDATE SKIP LOCKED
), d AS (
	DELETE FROM bq USING j WHERE bq.id = j.id RETURNING j.id, j.payload
), ins AS (
	INSERT INTO sink (design, msg, enq)
	SELECT 'skiplocked', (payload->>'i')::bigint, (payload->>'t')::timestamptz FROM d
	RETURNING 1
)
SELECT count(*) AS n FROM ins
\gset
\if :n = 0
\sleep :poll_ms ms
\endif
