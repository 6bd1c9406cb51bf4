-- One polling consumer round: take up to :batch jobs (SKIP LOCKED), run the
-- "handler" (one small insert each) and delete them in one transaction;
-- sleep :poll_ms when the table was empty.
WITH j AS (
	DELETE FROM bq WHERE id IN (SELECT id FROM bq ORDER BY id LIMIT :batch FOR UPDATE SKIP LOCKED)
	RETURNING id, payload
), ins AS (
	INSERT INTO sink (design, msg, enq)
	SELECT 'skiplocked', (payload->>'i')::bigint, (payload->>'t')::timestamptz FROM j
	RETURNING 1
)
SELECT count(*) AS n FROM ins
\gset
\if :n = 0
\sleep :poll_ms ms
\endif
