-- The background worker in the regression instance: it runs a handler as
-- the queue's owner, records failures, and refuses an owner that has become
-- a superuser since the handler was installed.
CREATE EXTENSION pacelc;
\set VERBOSITY terse
-- roles are cluster-wide: leftovers of an interrupted run go first
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_pacelc_queue_rt;
RESET client_min_messages;
CREATE ROLE regress_pacelc_queue_rt LOGIN;
GRANT USAGE ON SCHEMA pacelc TO regress_pacelc_queue_rt;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pacelc TO regress_pacelc_queue_rt;
CREATE TABLE public.rt_seen (who name, n int);
GRANT INSERT ON public.rt_seen TO regress_pacelc_queue_rt;
CREATE FUNCTION public.rt_handler(p jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	IF (p->>'n')::int < 0 THEN
		RAISE EXCEPTION 'negative % refused', p->>'n' USING ERRCODE = '22003';
	END IF;
	INSERT INTO public.rt_seen VALUES (current_user, (p->>'n')::int);
END $$;
ALTER FUNCTION public.rt_handler(jsonb) OWNER TO regress_pacelc_queue_rt;

-- waits (at most 30 s) until the queue has no due message left, none
-- waiting for its first attempt and none leased to a worker
CREATE FUNCTION pg_temp.drain(q text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1..3000 LOOP
		IF NOT EXISTS (SELECT 1 FROM pacelc.messages m
						WHERE m.queue = q AND m.state = 'ready'
						  AND (m.attempts = 0 OR m.leased_until IS NOT NULL)) THEN
			RETURN true;
		END IF;
		PERFORM pg_sleep(0.01);
	END LOOP;
	RETURN false;
END $$;

SET ROLE regress_pacelc_queue_rt;
SELECT pacelc.create_queue('rt', 'public.rt_handler(jsonb)', max_attempts => 1, backoff => '0');
SELECT pacelc.enqueue('rt', '{"n": 1}') > 0 AS queued;
SELECT pacelc.enqueue('rt', '{"n": -1}') > 0 AS queued;
SELECT pacelc.enqueue('rt', '{"n": 2}') > 0 AS queued;
RESET ROLE;
SELECT pg_temp.drain('rt');
SELECT who, n FROM public.rt_seen ORDER BY n;
SELECT payload, attempts, last_error, last_sqlstate FROM pacelc.dead_letters WHERE queue = 'rt';
SELECT state, count(*) FROM pacelc.messages WHERE queue = 'rt' GROUP BY state ORDER BY state;

-- the owner became a superuser: the worker refuses to run the handler
ALTER ROLE regress_pacelc_queue_rt SUPERUSER;
SELECT pacelc.enqueue('rt', '{"n": 3}') AS m3 \gset
SELECT pg_temp.drain('rt');
SELECT state, last_error, last_sqlstate FROM pacelc.messages WHERE id = :m3;
SELECT count(*) FROM public.rt_seen WHERE n = 3;
ALTER ROLE regress_pacelc_queue_rt NOSUPERUSER;
SELECT pacelc.retry(:m3);
SELECT pg_temp.drain('rt');
SELECT state FROM pacelc.messages WHERE id = :m3;
SELECT who, n FROM public.rt_seen WHERE n = 3;

DROP EXTENSION pacelc;
DROP TABLE public.rt_seen;
DROP FUNCTION public.rt_handler(jsonb);
DROP OWNED BY regress_pacelc_queue_rt;
DROP ROLE regress_pacelc_queue_rt;
