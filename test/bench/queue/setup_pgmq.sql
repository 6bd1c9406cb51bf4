-- pgmq 1.5.1 (pgmq-1.5.1.sql, copied unmodified from
-- https://github.com/pgmq/pgmq tag v1.5.1, pgmq-extension/sql/pgmq.sql;
-- Copyright (c) 2023, Tembo, the PostgreSQL License: pgmq-LICENSE), run as
-- a plain script into schema pgmq of the benchmark's throw-away server.
-- One queue; the consumers read batches with pgmq.read() (FOR UPDATE SKIP
-- LOCKED, visibility timeout 30 s), run the "handler" (one small insert per
-- message) and pgmq.delete() the batch in the same transaction.
SELECT pgmq.create('bench');
CREATE FUNCTION bench_pgmq_consume(n integer) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	ids	bigint[];
BEGIN
	WITH r AS (SELECT msg_id, message FROM pgmq.read('bench', 30, n)),
		 ins AS (INSERT INTO sink (design, msg, enq)
				 SELECT 'pgmq', (message->>'i')::bigint, (message->>'t')::timestamptz FROM r)
	SELECT array_agg(msg_id) INTO ids FROM r;
	IF ids IS NULL THEN
		RETURN 0;
	END IF;
	PERFORM pgmq.delete('bench', ids);
	RETURN cardinality(ids);
END $$;
