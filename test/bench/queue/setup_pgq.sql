-- PgQ (Debian package postgresql-15-pgq3): one queue, one consumer.  PgQ
-- consumers each see every event (pub/sub), so one consumer is the design.
CREATE EXTENSION pgq;
SELECT pgq.create_queue('bench');
SELECT pgq.set_queue_config('bench', 'ticker_max_lag', '0');
SELECT pgq.register_consumer('bench', 'sink');
CREATE FUNCTION bench_pgq_consume() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	b	bigint := pgq.next_batch('bench', 'sink');
	n	bigint;
BEGIN
	IF b IS NULL THEN
		RETURN 0;
	END IF;
	INSERT INTO sink (design, msg, enq)
	SELECT 'pgq', (ev_data::jsonb->>'i')::bigint, (ev_data::jsonb->>'t')::timestamptz
	  FROM pgq.get_batch_events(b);
	GET DIAGNOSTICS n = ROW_COUNT;
	PERFORM pgq.finish_batch(b);
	RETURN greatest(n, 1);
END $$;
