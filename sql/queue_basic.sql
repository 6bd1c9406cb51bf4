-- Compensation queue: every function, the views and the error paths.
CREATE EXTENSION pacelc;
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\set filename :abs_srcdir '/sql/include/err.sql'
\i :filename

SELECT queue, handler, max_attempts, backoff, depth FROM pacelc.queue_status;

-- a queue for an external consumer
SELECT pacelc.create_queue('refunds', max_attempts => 2, backoff => '0');
SELECT pacelc.enqueue('refunds', '{"order": 1}') AS m1 \gset
SELECT pacelc.enqueue('refunds', '{"order": 2}', idempotency_key => 'r-2') AS m2 \gset
SELECT pacelc.enqueue('refunds', '{"order": 2}', idempotency_key => 'r-2') = :m2 AS same_id;
SELECT pacelc.enqueue('refunds', '{"order": 3}', delay => '1 hour') AS m3 \gset
SELECT queue, due, scheduled, in_flight, depth, done, dead FROM pacelc.queue_status WHERE queue = 'refunds';

-- transactional: rolled back, it never existed
BEGIN;
SELECT pacelc.enqueue('refunds', '{"order": 4}') IS NOT NULL;
ROLLBACK;
SELECT count(*) FROM pacelc.messages WHERE payload = '{"order": 4}';

-- dequeue leases due messages; a leased message is not handed out twice
SELECT id = :m1 AS first, payload, attempts FROM pacelc.dequeue('refunds');
SELECT id = :m2 AS second, payload FROM pacelc.dequeue('refunds', 10);
SELECT count(*) FROM pacelc.dequeue('refunds', 10);
SELECT in_flight, scheduled FROM pacelc.queue_status WHERE queue = 'refunds';
SELECT pacelc.ack(:m1);
SELECT pg_temp.err(format('SELECT pacelc.ack(%s)', :m1));
-- a failure: retried, then dead after max_attempts
SELECT pacelc.nack(:m2, 'bank down', retry_in => '0');
SELECT state, attempts, last_error FROM pacelc.messages WHERE id = :m2;
SELECT id = :m2 AS again FROM pacelc.dequeue('refunds');
SELECT pacelc.nack(:m2, 'bank still down');
SELECT id = :m2 AS dead, attempts, last_error FROM pacelc.dead_letters;
SELECT pg_temp.err(format('SELECT pacelc.nack(%s, %L)', :m2, 'x'));
SELECT message_id = :m2, attempt, error FROM pacelc.message_errors ORDER BY attempt;
SELECT pacelc.retry(:m2);
SELECT state, attempts FROM pacelc.messages WHERE id = :m2;
SELECT pg_temp.err(format('SELECT pacelc.retry(%s)', :m2));
SELECT queue, depth, in_flight, done, dead, failed_attempts FROM pacelc.stats() WHERE queue = 'refunds';

-- a lease that runs out makes the message reappear
SELECT pacelc.create_queue('short');
SELECT pacelc.enqueue('short', '{}') AS s1 \gset
-- (a lease of 1 s: the second dequeue must come before it runs out, also
-- on a busy machine)
SELECT count(*) FROM pacelc.dequeue('short', 1, '1 s');
SELECT count(*) FROM pacelc.dequeue('short');
SELECT pg_sleep(1.1);
SELECT id = :s1 AS back, attempts FROM pacelc.dequeue('short');
-- a consumer that dies on a message max_attempts times dead-letters it
SELECT pacelc.create_queue('poison', max_attempts => 2);
SELECT pacelc.enqueue('poison', '{"bad": true}') AS p1 \gset
SELECT count(*) FROM pacelc.dequeue('poison', 1, '20 ms');
SELECT pg_sleep(0.05);
SELECT count(*) FROM pacelc.dequeue('poison', 1, '20 ms');
SELECT pg_sleep(0.05);
SELECT count(*) AS leased FROM pacelc.dequeue('poison', 1, '20 ms');
SELECT id = :p1 AS dead_letter, attempts, last_error FROM pacelc.dead_letters WHERE queue = 'poison';
SELECT attempt, error FROM pacelc.message_errors WHERE message_id = :p1;
SELECT pacelc.drop_queue('poison');

-- errors
SELECT pg_temp.err($$SELECT pacelc.enqueue('nope', '{}')$$);
SELECT pg_temp.err($$SELECT pacelc.dequeue('nope')$$);
SELECT pg_temp.err($$SELECT pacelc.drop_queue('nope')$$);
SELECT pg_temp.err($$SELECT pacelc.alter_queue('nope', max_attempts => 2)$$);
SELECT pg_temp.err($$SELECT pacelc.enqueue(NULL, '{}')$$);
SELECT pg_temp.err($$SELECT pacelc.enqueue('refunds', NULL)$$);
SELECT pg_temp.err($$SELECT pacelc.enqueue('refunds', '{}', NULL)$$);
SELECT pg_temp.err($$SELECT pacelc.enqueue('refunds', '{}', '-1 s')$$);
SELECT pg_temp.err($$SELECT pacelc.enqueue('refunds', '{}', idempotency_key => '')$$);
SELECT pg_temp.err(format('SELECT pacelc.enqueue(%L, %L, idempotency_key => %L)', 'refunds', '{}', repeat('k', 256)));
SELECT pg_temp.err($$SELECT pacelc.enqueue('x''; DROP TABLE pacelc.messages; --', '{}')$$);
SELECT pg_temp.err($$SELECT pacelc.alter_queue(NULL, max_attempts => 2)$$);
SELECT pg_temp.err($$SELECT pacelc.create_queue('q0', backoff => NULL)$$);
SELECT pg_temp.err($$SELECT pacelc.purge_done(NULL)$$);
SELECT pg_temp.err($$SELECT pacelc.fold_confirmed(NULL)$$);
SELECT pg_temp.err($$SELECT pacelc.retry(NULL)$$);
-- a delayed message is scheduled, not due
SELECT pacelc.enqueue('refunds', '{"order": 5}', delay => '2 hours') > 0 AS delayed;
SELECT scheduled FROM pacelc.queue_status WHERE queue = 'refunds';
-- read-only transactions cannot enqueue
BEGIN READ ONLY;
SELECT pg_temp.err($$SELECT pacelc.enqueue('refunds', '{}')$$);
ROLLBACK;
SELECT pg_temp.err($$SELECT pacelc.dequeue('refunds', 0)$$);
SELECT pg_temp.err($$SELECT pacelc.dequeue('refunds', 1, '0 s')$$);
SELECT pg_temp.err($$SELECT pacelc.dequeue('refunds', NULL)$$);
SELECT pg_temp.err($$SELECT pacelc.ack(NULL)$$);
SELECT pg_temp.err($$SELECT pacelc.ack(424242)$$);
SELECT pg_temp.err($$SELECT pacelc.nack(424242, 'x')$$);
SELECT pg_temp.err(format('SELECT pacelc.nack(%s, NULL)', :m3));
SELECT pg_temp.err(format('SELECT pacelc.nack(%s, %L, %L)', :m3, 'x', '-1 s'));
SELECT pg_temp.err($$SELECT pacelc.retry(424242)$$);
SELECT pg_temp.err($$SELECT pacelc.create_queue(NULL)$$);
SELECT pg_temp.err($$SELECT pacelc.create_queue('refunds')$$);
SELECT pg_temp.err($$SELECT pacelc.create_queue('')$$);
SELECT pg_temp.err($$SELECT pacelc.create_queue('x''; DROP TABLE pacelc.messages; --')$$);
SELECT pg_temp.err($$SELECT pacelc.create_queue('has space')$$);
SELECT pg_temp.err(format('SELECT pacelc.create_queue(%L)', repeat('q', 57)));
SELECT pg_temp.err($$SELECT pacelc.create_queue('q0', max_attempts => 0)$$);
SELECT pg_temp.err($$SELECT pacelc.create_queue('q0', max_attempts => NULL)$$);
SELECT pg_temp.err($$SELECT pacelc.create_queue('q0', backoff => '-1 s')$$);
SELECT pg_temp.err($$SELECT pacelc.create_queue('q0', 'lower(text)')$$);
SELECT pg_temp.err($$SELECT pacelc.create_queue('q0', 'nonexistent(jsonb)')$$);
SELECT pg_temp.err($$SELECT pacelc.drop_queue('expired')$$);
SELECT pg_temp.err($$SELECT pacelc.drop_queue(NULL)$$);
SELECT count(*) AS messages_intact FROM pacelc.messages;

-- handlers: never as a superuser; they run as the role that installs them
CREATE FUNCTION public.note_refund(p jsonb) RETURNS void LANGUAGE sql
	AS $$ SELECT 1 $$;
SELECT pg_temp.err($$SELECT pacelc.create_queue('q0', 'public.note_refund(jsonb)')$$);
-- roles are cluster-wide: leftovers of an interrupted run go first
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_pacelc_queue_app, regress_pacelc_queue_other;
RESET client_min_messages;
CREATE ROLE regress_pacelc_queue_app LOGIN;
CREATE ROLE regress_pacelc_queue_other;
GRANT USAGE ON SCHEMA pacelc TO regress_pacelc_queue_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pacelc TO regress_pacelc_queue_app;
GRANT SELECT ON ALL TABLES IN SCHEMA pacelc TO regress_pacelc_queue_app;
REVOKE EXECUTE ON FUNCTION public.note_refund(jsonb) FROM PUBLIC;
SET ROLE regress_pacelc_queue_app;
SELECT pg_temp.err($$SELECT pacelc.create_queue('q0', 'public.note_refund(jsonb)')$$);
RESET ROLE;
GRANT EXECUTE ON FUNCTION public.note_refund(jsonb) TO regress_pacelc_queue_app;
SET ROLE regress_pacelc_queue_app;
SELECT pacelc.create_queue('q0', 'public.note_refund(jsonb)');
SELECT queue, handler, owner FROM pacelc.queue_status WHERE queue = 'q0';
SELECT pg_temp.err($$SELECT pacelc.drop_queue('refunds')$$);
SELECT pg_temp.err($$SELECT pacelc.alter_queue('refunds', max_attempts => 5)$$);
SELECT pacelc.alter_queue('q0', max_attempts => 5, backoff => '2 s');
-- an owner cannot hand a queue (and its handler's execution) to a role it is not a member of
SELECT pg_temp.err($$SELECT pacelc.alter_queue('q0', new_owner => 'regress_pacelc_queue_other')$$);
RESET ROLE;
-- the built-in queue gets a handler from an ordinary role
SELECT pg_temp.err($$SELECT pacelc.alter_queue('expired', 'public.note_refund(jsonb)')$$);
SET ROLE regress_pacelc_queue_app;
SELECT pg_temp.err($$SELECT pacelc.alter_queue('expired', 'public.note_refund(jsonb)')$$);
RESET ROLE;
SELECT pacelc.alter_queue('expired', new_owner => 'regress_pacelc_queue_app');
SET ROLE regress_pacelc_queue_app;
SELECT pacelc.alter_queue('expired', 'public.note_refund(jsonb)');
SELECT queue, handler, owner FROM pacelc.queue_status WHERE queue = 'expired';
SELECT pacelc.alter_queue('expired', drop_handler => true);
RESET ROLE;
SELECT queue, handler, max_attempts, backoff FROM pacelc.queue_status ORDER BY queue;
SELECT pacelc.drop_queue('q0');
SELECT pacelc.drop_queue('short');
SELECT queue FROM pacelc.queue_status ORDER BY queue;

-- an expired hold reports its on_expire payload on the queue "expired"
SELECT pacelc.set_stock('exp', 3);
SELECT pacelc.reserve('exp', 2, ttl => '10 ms', on_expire => '{"cart": 7}') AS h1 \gset
SELECT pacelc.reserve('exp', 1, ttl => '10 ms') AS h2 \gset
SELECT pg_sleep(0.05);
SELECT pacelc.expire_holds() >= 0;
SELECT state FROM pacelc.reservations WHERE sku = 'exp' ORDER BY id;
SELECT payload->'reservation_id' = to_jsonb(:h1) AS id_ok, payload - 'reservation_id'
  FROM pacelc.messages WHERE queue = 'expired';
SELECT pacelc.available('exp');

-- enqueue writes its row without an INSERT statement, yet what a superuser
-- added to the table still applies: a rule, a NOT NULL, a CHECK constraint
-- replaced under its shipped name
SELECT pacelc.create_queue('fp');
CREATE TABLE public.fp_audit (queue text);
CREATE RULE fp_audit AS ON INSERT TO pacelc.messages DO ALSO INSERT INTO public.fp_audit VALUES (NEW.queue);
-- (the statement refuses the rule: no message without its audit row)
SELECT pg_temp.err($$SELECT pacelc.enqueue('fp', '{"a": 1}')$$);
SELECT count(*) AS audited FROM public.fp_audit;
DROP RULE fp_audit ON pacelc.messages;
DROP TABLE public.fp_audit;
BEGIN;
DELETE FROM pacelc.messages;
ALTER TABLE pacelc.messages ALTER COLUMN leased_until SET NOT NULL;
SELECT pg_temp.err($$SELECT pacelc.enqueue('fp', '{"a": 2}')$$);
ROLLBACK;
BEGIN;
ALTER TABLE pacelc.messages DROP CONSTRAINT message_state_valid,
	ADD CONSTRAINT message_state_valid CHECK (state <> 'ready') NOT VALID;
SELECT pg_temp.err($$SELECT pacelc.enqueue('fp', '{"a": 3}')$$);
ROLLBACK;
SELECT pacelc.enqueue('fp', '{"a": 4}') > 0 AS enqueued_again;
-- a column a superuser gave another type: the statement converts the
-- value (the direct insert would store jsonb's bytes as json text)
BEGIN;
ALTER EXTENSION pacelc DROP VIEW pacelc.dead_letters;
DROP VIEW pacelc.dead_letters;
ALTER TABLE pacelc.messages ALTER COLUMN payload TYPE json;
SELECT pacelc.enqueue('fp', '{"b": [1, 2]}') AS fp_json \gset
SELECT payload::text FROM pacelc.messages WHERE id = :fp_json;
ROLLBACK;
-- indexes a superuser adds later (the direct insert keeps the indexes'
-- compiled predicates and expressions per relcache build): written and
-- enforced from the next enqueue on, and no longer once dropped
CREATE UNIQUE INDEX regress_fp_once ON pacelc.messages ((payload ->> 'u'))
	WHERE queue = 'fp' AND payload ? 'u';
CREATE INDEX regress_fp_lower ON pacelc.messages (lower(queue)) WHERE attempts = 0;
SELECT pacelc.enqueue('fp', '{"u": "x"}') > 0 AS enqueued;
SELECT pg_temp.err($$SELECT pacelc.enqueue('fp', '{"u": "x"}')$$);
SELECT pacelc.enqueue('fp', '{"u": "y"}') > 0 AS other_value;
SELECT pacelc.enqueue('fp', '{"v": "x"}') > 0 AS not_in_the_index;
CREATE EXTENSION amcheck;
SELECT bt_index_check('pacelc.regress_fp_once', true) AS once_whole,
	   bt_index_check('pacelc.regress_fp_lower', true) AS lower_whole;
DROP EXTENSION amcheck;
DROP INDEX pacelc.regress_fp_once, pacelc.regress_fp_lower;
SELECT pacelc.enqueue('fp', '{"u": "x"}') > 0 AS enqueued_after_drop;
-- a domain's CHECK runs a DBA's function (here one that enqueues again):
-- an index expression casting to the domain is not pure, each insert
-- compiles its own (a kept one is re-entered: the outer row got the inner
-- row's index entry)
CREATE FUNCTION public.regress_fp_reenter(v text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	IF v = 'outer' THEN PERFORM pacelc.enqueue('fp', '{"d": "inner"}'); END IF;
	RETURN true;
END $$;
CREATE DOMAIN public.regress_fp_dom AS text CHECK (public.regress_fp_reenter(VALUE));
CREATE INDEX regress_fp_dom ON pacelc.messages (((payload ->> 'd')::public.regress_fp_dom));
SELECT pacelc.enqueue('fp', '{"d": "warm"}') > 0 AS warmed;
SELECT pacelc.enqueue('fp', '{"d": "outer"}') > 0 AS reentered;
SET enable_seqscan = off;
SELECT count(*) AS outer_indexed FROM pacelc.messages
	WHERE (payload ->> 'd')::public.regress_fp_dom = 'outer';
RESET enable_seqscan;
CREATE EXTENSION amcheck;
SELECT bt_index_check('pacelc.regress_fp_dom', true) AS dom_whole;
DROP EXTENSION amcheck;
DROP INDEX pacelc.regress_fp_dom;
DROP DOMAIN public.regress_fp_dom;
DROP FUNCTION public.regress_fp_reenter(text);
-- an index's operator class function is a DBA's code too, run while the
-- insert uses the kept build: here it makes that build stale (lower()
-- turns volatile) and enqueues again, which builds anew, while the outer
-- insert has yet to evaluate the next index's predicate and expressions
CREATE FUNCTION public.regress_fp_hash(v text) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
	s text;
BEGIN
	IF v = 'outer' THEN
		ALTER FUNCTION pg_catalog.lower(text) VOLATILE;
		PERFORM pacelc.enqueue('fp', '{"h": "inner"}');
		ALTER FUNCTION pg_catalog.lower(text) IMMUTABLE;
		SELECT string_agg(md5(i::text), ',') INTO s FROM generate_series(1, 2000) i;
	END IF;
	RETURN pg_catalog.hashtext(v);
END $$;
CREATE OPERATOR CLASS public.regress_fp_hash_ops FOR TYPE text USING hash AS
	OPERATOR 1 pg_catalog.=, FUNCTION 1 public.regress_fp_hash(text);
CREATE INDEX regress_fp_hash ON pacelc.messages
	USING hash ((payload ->> 'h') public.regress_fp_hash_ops);
CREATE INDEX regress_fp_after ON pacelc.messages (lower(queue), (payload ->> 'h'))
	WHERE attempts = 0 AND payload ? 'h';
SELECT pacelc.enqueue('fp', '{"h": "warm"}') > 0 AS warmed;
SELECT pacelc.enqueue('fp', '{"h": "outer"}') > 0 AS reentered;
SELECT payload ->> 'h' AS h FROM pacelc.messages WHERE payload ? 'h' ORDER BY id;
CREATE EXTENSION amcheck;
SELECT bt_index_check('pacelc.regress_fp_after', true) AS after_whole;
DROP EXTENSION amcheck;
DROP INDEX pacelc.regress_fp_hash, pacelc.regress_fp_after;
DROP OPERATOR FAMILY public.regress_fp_hash_ops USING hash;
DROP FUNCTION public.regress_fp_hash(text);
-- a CHECK constraint calling a DBA's function that enqueues again: the
-- nested insert checks its row apart from the outer one (sharing the
-- compiled checks, it left the outer's next check without its row: a crash)
CREATE FUNCTION public.regress_fp_check(p jsonb) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	IF p ->> 'c' = 'outer' THEN PERFORM pacelc.enqueue('fp', '{"c": "inner"}'); END IF;
	RETURN true;
END $$;
ALTER TABLE pacelc.messages ADD CONSTRAINT regress_fp_a CHECK (public.regress_fp_check(payload));
ALTER TABLE pacelc.messages ADD CONSTRAINT regress_fp_b CHECK (payload IS NOT NULL AND length(queue) < 100);
SELECT pacelc.enqueue('fp', '{"c": "warm"}') > 0 AS warmed;
SELECT pacelc.enqueue('fp', '{"c": "outer"}') > 0 AS reentered;
SELECT payload ->> 'c' AS c FROM pacelc.messages WHERE payload ? 'c' ORDER BY id;
ALTER TABLE pacelc.messages DROP CONSTRAINT regress_fp_a, DROP CONSTRAINT regress_fp_b;
DROP FUNCTION public.regress_fp_check(jsonb);
SELECT pacelc.drop_queue('fp');

DROP EXTENSION pacelc;
DROP FUNCTION public.note_refund(jsonb);
DROP OWNED BY regress_pacelc_queue_app;
DROP ROLE regress_pacelc_queue_app;
DROP ROLE regress_pacelc_queue_other;
