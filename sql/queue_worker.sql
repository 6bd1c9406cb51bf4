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

-- a handler that sets transaction_timeout (PostgreSQL 17), whose expiry
-- would end the worker's session, only fails its own attempt: the worker
-- lives on (on older versions, and builds with assertions, where the worker
-- cannot replace the timeout's handler, it raises what the cancel raises)
CREATE FUNCTION public.rt_timeout(p jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	IF pg_catalog.current_setting('server_version_num')::int >= 170000
	   AND pg_catalog.current_setting('debug_assertions') = 'off' THEN
		PERFORM pg_catalog.set_config('transaction_timeout', '20ms', true);
		PERFORM pg_catalog.pg_sleep(2);
	ELSE
		RAISE EXCEPTION 'canceling statement due to user request' USING ERRCODE = '57014';
	END IF;
END $$;
ALTER FUNCTION public.rt_timeout(jsonb) OWNER TO regress_pacelc_queue_rt;
SELECT pid AS worker_pid FROM pg_stat_activity WHERE backend_type = 'pacelc worker'
 ORDER BY backend_start LIMIT 1 \gset
SET ROLE regress_pacelc_queue_rt;
SELECT pacelc.create_queue('rt_timeout', 'public.rt_timeout(jsonb)', max_attempts => 1, backoff => '0');
SELECT pacelc.enqueue('rt_timeout', '{"n": 4}') AS m4 \gset
RESET ROLE;
SELECT pg_temp.drain('rt_timeout');
SELECT state, last_sqlstate FROM pacelc.messages WHERE id = :m4;
SELECT count(*) AS worker_alive FROM pg_stat_activity WHERE pid = :worker_pid;
SELECT pacelc.drop_queue('rt_timeout');
DROP FUNCTION public.rt_timeout(jsonb);

DROP EXTENSION pacelc;
DROP TABLE public.rt_seen;
DROP FUNCTION public.rt_handler(jsonb);
DROP OWNED BY regress_pacelc_queue_rt;
DROP ROLE regress_pacelc_queue_rt;
