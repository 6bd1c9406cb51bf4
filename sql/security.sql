-- Attacks by a role with the documented grants (pacelc_app, plus the TEMP
-- privilege every role has by default): none may run its code as another
-- role, act for another application, or stall others.
CREATE EXTENSION pacelc;
\set VERBOSITY terse
SELECT current_user AS regress_su \gset
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_pacelc_attacker, regress_pacelc_victim,
	regress_pacelc_definer, regress_pacelc_mon, regress_pacelc_adm;
RESET client_min_messages;
CREATE ROLE regress_pacelc_attacker LOGIN IN ROLE pacelc_app;
CREATE ROLE regress_pacelc_victim LOGIN IN ROLE pacelc_app;
CREATE ROLE regress_pacelc_definer LOGIN IN ROLE pacelc_app;
CREATE ROLE regress_pacelc_mon LOGIN IN ROLE pacelc_monitor;
CREATE ROLE regress_pacelc_adm LOGIN IN ROLE pacelc_admin;
CREATE SCHEMA regress_sec AUTHORIZATION regress_pacelc_attacker;
CREATE TABLE public.regress_pwned (who name, sess name, what text);
GRANT INSERT ON public.regress_pwned TO PUBLIC;
CREATE FUNCTION public.regress_err(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
GRANT EXECUTE ON FUNCTION public.regress_err(text) TO PUBLIC;
-- the same, without the ids that depend on what ran before
CREATE FUNCTION public.regress_err_n(sql text) RETURNS text LANGUAGE sql
	RETURN regexp_replace(public.regress_err(sql), '(reservation|message) \d+', '\1 N', 'g');
GRANT EXECUTE ON FUNCTION public.regress_err_n(text) TO PUBLIC;
SELECT pacelc.set_stock('sec-1', 100);

-- 1. Temporary-schema shadowing.  The attacker's pg_temp gets a domain for
-- every type name pacelc's code could resolve, and a table (with a trigger)
-- for every relation name; each records who runs it.  No pacelc function
-- may end up running the attacker's code as anyone but the attacker.  The
-- attacker works in a session of its own, so that its temporary objects
-- shadow names only there.
\c - regress_pacelc_attacker
\set VERBOSITY terse
CREATE FUNCTION regress_sec.evil(anyelement) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.regress_pwned VALUES (current_user, session_user, pg_typeof($1)::pg_catalog.text);
	BEGIN
		EXECUTE 'ALTER ROLE regress_pacelc_attacker SUPERUSER';
	EXCEPTION WHEN OTHERS THEN NULL;
	END;
	RETURN true;
END $$;
CREATE FUNCTION regress_sec.evil_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM regress_sec.evil(TG_TABLE_NAME::pg_catalog.text);
	RETURN NULL;
END $$;
DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['text', 'int8', 'int4', 'int2', 'jsonb', 'json', 'regrole',
							 'regprocedure', 'regproc', 'regtype', 'regnamespace', 'regclass',
							 'timestamptz', 'timestamp', 'oid', 'bool', 'name', 'float8',
							 'numeric', 'pg_lsn', 'varchar', 'bpchar', 'date', 'aclitem']
	LOOP
		EXECUTE format('CREATE DOMAIN pg_temp.%I AS pg_catalog.%I CHECK (regress_sec.evil(VALUE))', t, t);
	END LOOP;
	FOREACH t IN ARRAY ARRAY['skus', 'reservation_data', 'idempotency_keys', 'queues',
							 'messages', 'message_errors', 'queue_grants', 'stock',
							 'reservations', 'queue_status', 'dead_letters', 'sku_home',
							 'pg_extension', 'pg_dist_partition', 'pg_dist_placement',
							 'pg_proc', 'pg_roles', 'pg_authid', 'pg_namespace', 'pg_class']
	LOOP
		EXECUTE format('CREATE TEMP TABLE %I (sku pg_catalog.text, name pg_catalog.text, queue pg_catalog.text, id pg_catalog.int8, key pg_catalog.text)', t);
		EXECUTE format('CREATE TRIGGER t BEFORE INSERT OR UPDATE OR DELETE ON pg_temp.%I FOR EACH ROW EXECUTE FUNCTION regress_sec.evil_trigger()', t);
		EXECUTE format('INSERT INTO pg_temp.%I (sku, name, queue, id, key) SELECT NULL, NULL, NULL, NULL, NULL WHERE false', t);
	END LOOP;
END $$;
CREATE FUNCTION regress_sec.handler(p pg_catalog.jsonb) RETURNS void LANGUAGE plpgsql AS $$ BEGIN END $$;
-- every entry point, called the way an application would
SELECT regress_err($$SELECT pacelc.set_stock('sec-a', 10)$$);
SELECT regress_err($$SELECT pacelc.add_stock('sec-a', 1)$$);
SELECT regress_err($$SELECT pacelc.reserve('sec-a', 1, ttl => '1 hour', idempotency_key => 'sec-k1', on_expire => '{}')$$);
SELECT regress_err($$SELECT pacelc.reserve('sec-a', 1, idempotency_key => 'sec-k1')$$);
SELECT regress_err($$SELECT pacelc.try_reserve('sec-a', 1, '1 hour', 'sec-k2', '{}')$$);
SELECT regress_err($$SELECT pacelc.reserve_all('{sec-a,sec-1}', '{1,1}', '1 hour', 'sec-k3', '{}')$$);
SELECT regress_err($$SELECT pacelc.confirm(pacelc.reserve('sec-a', 1))$$);
SELECT regress_err($$SELECT pacelc.release(pacelc.reserve('sec-a', 1))$$);
SELECT regress_err($$SELECT pacelc.available('sec-a')$$);
SELECT regress_err($$SELECT pacelc.next_expiry()$$);
SELECT regress_err($$SELECT * FROM pacelc.verify()$$);
SELECT regress_err($$SELECT * FROM pacelc.stock$$);
SELECT regress_err($$SELECT * FROM pacelc.reservations$$);
SELECT regress_err($$SELECT pacelc.create_queue('sec_q', 'regress_sec.handler(pg_catalog.jsonb)', 3, '1 s')$$);
SELECT regress_err($$SELECT pacelc.alter_queue('sec_q', 'regress_sec.handler(pg_catalog.jsonb)')$$);
SELECT regress_err($$SELECT pacelc.alter_queue('sec_q', max_attempts => 4, backoff => '2 s')$$);
SELECT regress_err($$SELECT pacelc.alter_queue('sec_q', drop_handler => true)$$);
SELECT regress_err($$SELECT pacelc.grant_queue('sec_q', 'all', 'regress_pacelc_victim')$$);
SELECT regress_err($$SELECT pacelc.revoke_queue('sec_q', 'consume', 'regress_pacelc_victim')$$);
SELECT regress_err($$SELECT pacelc.enqueue('sec_q', '{"a": 1}', '0', 'sec-m1')$$);
SELECT regress_err($$SELECT pacelc.enqueue('sec_q', '{"a": 1}', '0', 'sec-m1')$$);
SELECT regress_err($$SELECT pacelc.enqueue('sec_q', '{"a": 2}')$$);
SELECT regress_err($$SELECT pacelc.ack((SELECT id FROM pacelc.dequeue('sec_q', 1, '1 min')))$$);
SELECT regress_err($$SELECT pacelc.nack((SELECT id FROM pacelc.dequeue('sec_q', 1, '1 min')), 'boom', '0 s')$$);
SELECT regress_err($$SELECT pacelc.purge_done('0 s')$$);
SELECT regress_err($$SELECT * FROM pacelc.stats()$$);
SELECT regress_err($$SELECT * FROM pacelc.queue_status$$);
SELECT regress_err($$SELECT * FROM pacelc.dead_letters$$);
SELECT regress_err($$SELECT * FROM pacelc.replica_status$$);
SELECT regress_err($$SELECT pacelc.commit_lsn(), pacelc.replay_lsn(), pacelc.wait_for_lsn('0/0')$$);
SELECT regress_err($$SELECT pacelc.confirm(pacelc.reserve('sec-a', 1), 'sec-a')$$);
SELECT regress_err($$SELECT pacelc.release(pacelc.reserve('sec-a', 1), 'sec-a')$$);
SELECT regress_err($$SELECT pacelc.node_token()$$);
SELECT regress_err($$SELECT pacelc.citus_token('sec-a')$$);
SELECT regress_err($$SELECT pacelc.reserve_all_at('sec-a', '{sec-a}', '{1}', '1 hour', 'sec-k4', '{}')$$);
SELECT regress_err($$SELECT pacelc.citus_reserve_all('{sec-a}', '{1}', '1 hour', 'sec-k5', '{}')$$);
SELECT regress_err($$SELECT * FROM pacelc.citus_tokens()$$);
SELECT regress_err($$SELECT * FROM pacelc.citus_verify()$$);
SELECT regress_err($$SELECT * FROM pacelc.citus_setup()$$);
SELECT regress_err($$SELECT pacelc.drop_queue('sec_q')$$);
-- a handler in a temporary schema, which another session may reuse later
CREATE FUNCTION pg_temp.h(p pg_catalog.jsonb) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT regexp_replace(regress_err($$SELECT pacelc.create_queue('sec_tmp', 'pg_temp.h(pg_catalog.jsonb)')$$),
					  'pg_temp_\d+', 'pg_temp_N');
SELECT regress_err($$SELECT pacelc.expire_holds(10)$$);
SELECT regress_err($$SELECT pacelc.fold_confirmed(10)$$);
-- the C entry points pin their search path in C (no SET clause): a schema
-- of the attacker's put before pg_catalog, with operators and functions of
-- the names their statements use, must not reach them either
CREATE FUNCTION regress_sec.eq(a pg_catalog.text, b pg_catalog.text) RETURNS boolean
	LANGUAGE plpgsql AS $$ BEGIN PERFORM regress_sec.evil(a); RETURN a OPERATOR(pg_catalog.=) b; END $$;
CREATE FUNCTION regress_sec.eq(a pg_catalog.int8, b pg_catalog.int8) RETURNS boolean
	LANGUAGE plpgsql AS $$ BEGIN PERFORM regress_sec.evil(a); RETURN a OPERATOR(pg_catalog.=) b; END $$;
CREATE OPERATOR regress_sec.= (LEFTARG = pg_catalog.text, RIGHTARG = pg_catalog.text, FUNCTION = regress_sec.eq);
CREATE OPERATOR regress_sec.= (LEFTARG = pg_catalog.int8, RIGHTARG = pg_catalog.int8, FUNCTION = regress_sec.eq);
CREATE FUNCTION regress_sec.now() RETURNS pg_catalog.timestamptz
	LANGUAGE plpgsql AS $$ BEGIN PERFORM regress_sec.evil(1); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION regress_sec.coalesce(a pg_catalog.int8, b pg_catalog.int8) RETURNS pg_catalog.int8
	LANGUAGE plpgsql AS $$ BEGIN PERFORM regress_sec.evil(a); RETURN b; END $$;
SET search_path = regress_sec, pg_catalog, public;
SELECT regress_err($$SELECT pacelc.set_stock('sec-o', 10)$$);
SELECT regress_err($$SELECT pacelc.add_stock('sec-o', 1)$$);
SELECT regress_err($$SELECT pacelc.reserve('sec-o', 1, ttl => '1 hour', idempotency_key => 'sec-o1', on_expire => '{}')$$);
SELECT regress_err($$SELECT pacelc.reserve('sec-o', 1, idempotency_key => 'sec-o1')$$);
SELECT regress_err($$SELECT pacelc.try_reserve('sec-o', 1, '1 hour', 'sec-o2', '{}')$$);
SELECT regress_err($$SELECT pacelc.reserve_all('{sec-o,sec-1}', '{1,1}', '1 hour', 'sec-o3', '{}')$$);
SELECT regress_err($$SELECT pacelc.confirm(pacelc.reserve('sec-o', 1))$$);
SELECT regress_err($$SELECT pacelc.release(pacelc.reserve('sec-o', 1))$$);
SELECT regress_err($$SELECT pacelc.confirm(pacelc.reserve('sec-o', 1), 'sec-o')$$);
SELECT regress_err($$SELECT pacelc.release(pacelc.reserve('sec-o', 1), 'sec-o')$$);
SELECT regress_err($$SELECT pacelc.available('sec-o')$$);
SELECT regress_err($$SELECT pacelc.create_queue('sec_o')$$);
SELECT regress_err($$SELECT pacelc.enqueue('sec_o', '{"a": 1}', '0', 'sec-o4')$$);
SELECT regress_err($$SELECT pacelc.enqueue('sec_o', '{"a": 1}', '0', 'sec-o4')$$);
SELECT regress_err($$SELECT pacelc.enqueue('sec_o', '{"a": 2}', '1 hour')$$);
SELECT regress_err($$SELECT pacelc.expire_holds(10)$$);
SELECT regress_err($$SELECT pacelc.drop_queue('sec_o')$$);
RESET search_path;
\c - :regress_su
\set VERBOSITY terse
-- which functions of the schema did the attack above not call?  (a new
-- function must be added to the list of calls)
SELECT p.proname FROM pg_catalog.pg_proc p
 WHERE p.pronamespace = 'pacelc'::regnamespace AND p.proname NOT LIKE '\_%'
   AND p.proname NOT IN ('set_stock', 'add_stock', 'reserve', 'try_reserve', 'reserve_all',
						 'confirm', 'release', 'available', 'next_expiry', 'verify',
						 'create_queue', 'alter_queue', 'grant_queue', 'revoke_queue',
						 'enqueue', 'dequeue', 'ack', 'nack', 'retry', 'purge_done', 'stats',
						 'commit_lsn', 'replay_lsn', 'wait_for_lsn', 'drop_queue',
						 'expire_holds', 'fold_confirmed', 'node_token', 'citus_token',
						 'reserve_all_at', 'citus_reserve_all', 'citus_tokens', 'citus_setup',
						 'citus_verify')
 ORDER BY 1;
-- nobody but the attacker ran the attacker's code
SELECT who, count(*) > 0 AS ran FROM public.regress_pwned GROUP BY who ORDER BY who;
SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = 'regress_pacelc_attacker';
DELETE FROM public.regress_pwned;

-- 2. Definer confusion: code owned by regress_pacelc_definer, called by
-- the attacker, acts as regress_pacelc_definer (current_user at the call
-- site), not as the session's role.
CREATE FUNCTION public.regress_make_queue(n pg_catalog.text) RETURNS void SECURITY DEFINER
	LANGUAGE sql AS $$ SELECT pacelc.create_queue(n) $$;
ALTER FUNCTION public.regress_make_queue(text) OWNER TO regress_pacelc_definer;
GRANT EXECUTE ON FUNCTION public.regress_make_queue(text) TO regress_pacelc_attacker;
SET ROLE regress_pacelc_attacker;
SELECT public.regress_make_queue('sec_def');
RESET ROLE;
SELECT name, owner FROM pacelc.queues WHERE name = 'sec_def';
SET ROLE regress_pacelc_attacker;
SELECT regress_err($$SELECT pacelc.drop_queue('sec_def')$$);
RESET ROLE;

-- 3. Handlers: a schema without USAGE, an OID of nothing, a SECURITY
-- DEFINER function owned by a superuser.
CREATE SCHEMA regress_closed;
CREATE FUNCTION regress_closed.h(p jsonb) RETURNS void LANGUAGE sql AS $$ SELECT $$;
GRANT EXECUTE ON FUNCTION regress_closed.h(jsonb) TO PUBLIC;
CREATE FUNCTION public.regress_su_h(p jsonb) RETURNS void SECURITY DEFINER LANGUAGE sql AS $$ SELECT $$;
GRANT EXECUTE ON FUNCTION public.regress_su_h(jsonb) TO PUBLIC;
SELECT 'regress_closed.h(jsonb)'::pg_catalog.regprocedure::pg_catalog.oid AS closed_oid \gset
SET ROLE regress_pacelc_attacker;
SELECT regress_err(format('SELECT pacelc.create_queue(%L, %s::oid::regprocedure)', 'sec_h1', :closed_oid));
SELECT regress_err($$SELECT pacelc.create_queue('sec_h2', 4000000000::oid::regprocedure)$$);
SELECT regress_err($$SELECT pacelc.create_queue('sec_h3', 'public.regress_su_h(jsonb)')$$);
RESET ROLE;

-- 4. A role that owns a queue cannot be dropped.
GRANT USAGE ON SCHEMA regress_sec TO regress_pacelc_victim;
SET ROLE regress_pacelc_victim;
SELECT pacelc.create_queue('sec_victim', 'regress_sec.handler(jsonb)');
RESET ROLE;
SELECT regress_err($$DROP ROLE regress_pacelc_victim$$);

-- 5. Internal functions refuse application roles, whatever they are granted.
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pacelc TO regress_pacelc_attacker;
SET ROLE regress_pacelc_attacker;
SELECT regress_err($$SELECT pacelc._wake_launcher()$$);
SELECT regress_err($$SELECT pacelc._wake_worker_at_commit()$$);
SELECT regress_err($$SELECT pacelc_private.drop_queue(0, 'sec_victim')$$);
RESET ROLE;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA pacelc FROM regress_pacelc_attacker;

-- 6. Isolation between applications.
CREATE COLLATION public.regress_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
SET ROLE regress_pacelc_victim;
SELECT pacelc.reserve('sec-1', 2, idempotency_key => 'victim-order-1') AS victim_hold \gset
SELECT pacelc.enqueue('sec_victim', '{"card": "4111"}') AS victim_msg \gset
RESET ROLE;
UPDATE pacelc.messages SET state = 'dead' WHERE id = :victim_msg;
GRANT SELECT ON ALL TABLES IN SCHEMA pacelc TO regress_pacelc_attacker;
SET ROLE regress_pacelc_attacker;
SELECT regress_err_n(format('SELECT pacelc.confirm(%s)', :victim_hold));
SELECT regress_err_n(format('SELECT pacelc.release(%s)', :victim_hold));
SELECT regress_err($$SELECT pacelc.reserve('sec-1', 2, idempotency_key => 'victim-order-1')$$);
SELECT regress_err($$SELECT pacelc.enqueue('sec_victim', '{}')$$);
SELECT regress_err($$SELECT pacelc.dequeue('sec_victim')$$);
SELECT regress_err_n(format('SELECT pacelc.retry(%s)', :victim_msg));
SELECT regress_err_n(format('SELECT pacelc.ack(%s)', :victim_msg));
SELECT regress_err($$SELECT pacelc.alter_queue('sec_victim', new_owner => 'regress_pacelc_attacker')$$);
-- the built-in queue cannot be taken over by creating it again
SELECT regress_err($$SELECT pacelc.create_queue('expired', 'regress_sec.handler(jsonb)')$$);
-- a caller's nondeterministic collation does not reach pacelc's comparisons:
-- a squatted case variant of the victim's queue name gives no access to it
SELECT pacelc.create_queue('SEC_VICTIM');
SELECT regress_err($$SELECT pacelc.dequeue('sec_victim' COLLATE public.regress_ci, 10)$$);
SELECT count(*) AS taken FROM pacelc.dequeue('SEC_VICTIM' COLLATE public.regress_ci, 10);
SELECT count(*) AS private_rows FROM pacelc.messages;
SELECT count(*) AS private_rows FROM pacelc.reservation_data;
SELECT count(*) AS visible_dead FROM pacelc.dead_letters;
SELECT count(*) AS visible_holds FROM pacelc.reservations WHERE id = :victim_hold;
SELECT queue FROM pacelc.queue_status ORDER BY 1;
SELECT queue FROM pacelc.stats() ORDER BY 1;
SELECT pacelc.purge_done('0 s') >= 0 AS purged;
RESET ROLE;
REVOKE SELECT ON ALL TABLES IN SCHEMA pacelc FROM regress_pacelc_attacker;
SELECT state FROM pacelc.messages WHERE id = :victim_msg;
-- a grant lets another role produce and consume
SET ROLE regress_pacelc_victim;
SELECT pacelc.grant_queue('sec_victim', 'all', 'regress_pacelc_attacker');
RESET ROLE;
SET ROLE regress_pacelc_attacker;
SELECT pacelc.enqueue('sec_victim', '{"from": "granted"}') > 0 AS produced;
SELECT count(*) AS visible_dead FROM pacelc.dead_letters;
SELECT regress_err_n(format('SELECT pacelc.retry(%s)', :victim_msg));
SELECT regress_err($$SELECT pacelc.drop_queue('sec_victim')$$);
RESET ROLE;
SET ROLE regress_pacelc_victim;
SELECT pacelc.revoke_queue('sec_victim', 'all', 'regress_pacelc_attacker');
RESET ROLE;
SET ROLE regress_pacelc_attacker;
SELECT regress_err($$SELECT pacelc.enqueue('sec_victim', '{}')$$);
RESET ROLE;
-- monitors see every queue and hold, no payloads; admins act for everyone
SET ROLE regress_pacelc_mon;
SELECT count(*) > 0 AS sees_holds FROM pacelc.reservations WHERE id = :victim_hold;
SELECT count(*) AS visible_dead FROM pacelc.dead_letters;
SELECT queue FROM pacelc.queue_status WHERE queue LIKE 'sec%' ORDER BY 1;
SELECT regress_err_n(format('SELECT pacelc.release(%s)', :victim_hold));
RESET ROLE;
SET ROLE regress_pacelc_adm;
SELECT pacelc.release(:victim_hold);
SELECT pacelc.expire_holds(10) >= 0 AS expired, pacelc.fold_confirmed(10) >= 0 AS folded;
RESET ROLE;

-- 8. Intervals with mixed signs, and ones too large to add.
SET ROLE regress_pacelc_victim;
SELECT regress_err($$SELECT pacelc.reserve('sec-1', 1, ttl => '-1 year +360 days 1 hour')$$);
SELECT regress_err($$SELECT pacelc.reserve('sec-1', 1, ttl => '1000000 years')$$);
SELECT regress_err($$SELECT pacelc.dequeue('sec_victim', 1, '-1 year +360 days 1 hour')$$);
SELECT regress_err($$SELECT pacelc.alter_queue('sec_victim', backoff => '1000000 years')$$);
SELECT regress_err($$SELECT pacelc.alter_queue('sec_victim', backoff => '-1 year +360 days 1 hour')$$);
SELECT regress_err($$SELECT pacelc.enqueue('sec_victim', '{}', delay => '1000000 years')$$);
SELECT regress_err($$SELECT pacelc.enqueue('sec_victim', '{}', delay => '-1 year +360 days 1 hour')$$);
-- months and days that cancel out when compared still span millennia
SELECT regress_err($$SELECT pacelc.alter_queue('sec_victim', backoff => '+290000 years -104400000 days')$$);
SELECT regress_err($$SELECT pacelc.reserve('sec-1', 1, ttl => '+290000 years -104400000 days')$$);
RESET ROLE;

-- every member of pacelc_app may run DROP OWNED BY pacelc_app: as for
-- PostgreSQL's own grants, it revokes only what the member could revoke
-- itself, never another application's queue grants
SET ROLE regress_pacelc_victim;
SELECT pacelc.grant_queue('sec_victim', 'produce', 'pacelc_app');
RESET ROLE;
SET ROLE regress_pacelc_attacker;
SELECT pacelc.create_queue('sec_attacker_q');
SELECT pacelc.grant_queue('sec_attacker_q', 'produce', 'pacelc_app');
SET client_min_messages = error;
DROP OWNED BY pacelc_app;
RESET client_min_messages;
-- DROP ROLE of another application is refused by PostgreSQL, before
-- pacelc's check could name the victim's queues, grants or holds
SELECT regress_err('DROP ROLE regress_pacelc_victim');
RESET ROLE;
SELECT queue FROM pacelc.queue_grants WHERE grantee = 'pacelc_app'::regrole ORDER BY 1;
SET ROLE regress_pacelc_victim;
SELECT pacelc.revoke_queue('sec_victim', 'produce', 'pacelc_app');
RESET ROLE;

-- DROP OWNED revokes queue grants, REASSIGN OWNED hands queues and holds over
SET ROLE regress_pacelc_victim;
SELECT pacelc.grant_queue('sec_victim', 'consume', 'regress_pacelc_definer');
RESET ROLE;
SELECT regress_err($$DROP ROLE regress_pacelc_definer$$);
DROP OWNED BY regress_pacelc_definer;
SELECT count(*) AS grants_left FROM pacelc.queue_grants WHERE grantee = 'regress_pacelc_definer'::regrole;
REASSIGN OWNED BY regress_pacelc_victim TO regress_pacelc_adm;
SELECT name, owner FROM pacelc.queues WHERE name = 'sec_victim';
REVOKE USAGE ON SCHEMA regress_sec FROM regress_pacelc_victim;
DROP ROLE regress_pacelc_victim;

-- 9. The C entry points pin their search path in C (0.5): a DBA's
-- trigger on pacelc's tables still runs with the search path its function
-- pins, not with pacelc's (an override search path, PostgreSQL 15's
-- cheaper way, would hide it), also when it calls pacelc and catches its
-- error; the caller's search path is intact after every call, failed ones
-- included.
CREATE SCHEMA regress_audit;
CREATE TABLE regress_audit.log (tbl text, path text, err text);
CREATE FUNCTION regress_audit.note(t text, e text) RETURNS void LANGUAGE plpgsql
	AS $$ BEGIN INSERT INTO log VALUES (t, pg_catalog.current_schemas(false)::text, e); END $$;
CREATE FUNCTION regress_audit.trg() RETURNS trigger LANGUAGE plpgsql
	SET search_path = regress_audit AS $$
DECLARE
	e text;
BEGIN
	BEGIN
		PERFORM pacelc.reserve('sec-none', 1);
	EXCEPTION WHEN OTHERS THEN
		e := SQLERRM;
	END;
	PERFORM note(TG_TABLE_NAME, e);
	RETURN NULL;
END $$;
CREATE TRIGGER regress_audit AFTER INSERT ON pacelc.reservation_data
	FOR EACH ROW WHEN (NEW.sku = 'sec-1') EXECUTE FUNCTION regress_audit.trg();
CREATE TRIGGER regress_audit AFTER INSERT ON pacelc.messages
	FOR EACH ROW WHEN (NEW.queue = 'sec_attacker_q') EXECUTE FUNCTION regress_audit.trg();
-- one that changes the search path for the rest of the transaction (SET
-- LOCAL): that ends when the entry point returns, as with a SET clause
CREATE FUNCTION regress_audit.trg_set() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_catalog.set_config('search_path', 'regress_audit', true);
	RETURN NULL;
END $$;
CREATE TRIGGER regress_audit_set AFTER INSERT ON pacelc.reservation_data
	FOR EACH ROW WHEN (NEW.sku = 'sec-1') EXECUTE FUNCTION regress_audit.trg_set();
SET ROLE regress_pacelc_attacker;
SET search_path = regress_sec, pg_catalog, public;
CREATE FUNCTION regress_sec.calls() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	e text;
BEGIN
	PERFORM pacelc.confirm(pacelc.reserve('sec-1', 1)), pacelc.enqueue('sec_attacker_q', '{}');
	BEGIN
		PERFORM pacelc.reserve('sec-none', 1);
	EXCEPTION WHEN OTHERS THEN
		e := SQLERRM;
	END;
	RETURN e || ', then ' || pg_catalog.current_schemas(false)::text;
END $$;
SELECT calls();
SELECT pacelc.reserve('sec-1', 1) > 0 AS reserved, current_schemas(false);
-- a failed call rolled back to a savepoint, and calls from a SECURITY
-- DEFINER function with a path of its own
BEGIN;
SELECT pacelc.reserve('sec-1', 1) > 0 AS reserved, current_schemas(false);
SELECT current_schemas(false);
SAVEPOINT s;
SELECT pacelc.release(pacelc.reserve('sec-none', 1));
ROLLBACK TO s;
SELECT pacelc.available('sec-1') >= 0 AS available, current_schemas(false);
COMMIT;
CREATE FUNCTION regress_sec.sd() RETURNS text SECURITY DEFINER
	SET search_path = regress_sec, pg_temp LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pacelc.confirm(pacelc.reserve('sec-1', 1));
	RETURN pg_catalog.regexp_replace(pg_catalog.current_schemas(false)::text, 'pg_temp_\d+', 'pg_temp_N');
END $$;
SELECT sd(), current_schemas(false);
RESET search_path;
RESET ROLE;
SELECT tbl, path, err, count(*) FROM regress_audit.log GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
DROP SCHEMA regress_audit CASCADE;

-- 10. enqueue() pins the owner's search path only before it runs code
-- that may resolve a name: its direct insert goes without while the
-- message table's CHECK constraints and index expressions call built-in
-- immutable functions alone.  A DBA's function there (which resolves its
-- names when it runs) makes it pin the path: the caller's schema, first
-- in its search path, is never searched.
CREATE FUNCTION public.regress_probe(p jsonb) RETURNS boolean LANGUAGE sql IMMUTABLE
	AS $$ SELECT true $$;
-- (only for the rows below: CREATE INDEX on PostgreSQL 17 evaluates it
-- for the rows already there with a search path of its own)
CREATE FUNCTION public.regress_msg_ok(p jsonb) RETURNS boolean LANGUAGE plpgsql IMMUTABLE
	AS $$ BEGIN IF p ? 'probe' THEN RETURN regress_probe(p); END IF; RETURN true; END $$;
GRANT EXECUTE ON FUNCTION public.regress_msg_ok(jsonb) TO PUBLIC;
SET ROLE regress_pacelc_attacker;
CREATE FUNCTION regress_sec.regress_probe(p pg_catalog.jsonb) RETURNS boolean LANGUAGE plpgsql
	AS $$ BEGIN RETURN regress_sec.evil(p); END $$;
SET search_path = regress_sec, public, pg_catalog;
SELECT regress_err($$SELECT pacelc.enqueue('sec_attacker_q', '{"n": 10}') > 0$$);
RESET search_path;
RESET ROLE;
ALTER TABLE pacelc.messages ADD CONSTRAINT regress_msg_ok CHECK (public.regress_msg_ok(payload));
SET ROLE regress_pacelc_attacker;
SET search_path = regress_sec, public, pg_catalog;
SELECT regress_err($$SELECT pacelc.enqueue('sec_attacker_q', '{"probe": 11}')$$);
RESET search_path;
RESET ROLE;
ALTER TABLE pacelc.messages DROP CONSTRAINT regress_msg_ok;
CREATE INDEX regress_msg_idx ON pacelc.messages (public.regress_msg_ok(payload));
SET ROLE regress_pacelc_attacker;
SET search_path = regress_sec, public, pg_catalog;
SELECT regress_err($$SELECT pacelc.enqueue('sec_attacker_q', '{"probe": 12}')$$);
RESET search_path;
RESET ROLE;
DROP INDEX pacelc.regress_msg_idx;
-- without them, the direct insert again
SET ROLE regress_pacelc_attacker;
SET search_path = regress_sec, public, pg_catalog;
SELECT regress_err($$SELECT pacelc.enqueue('sec_attacker_q', '{"n": 13}') > 0$$);
RESET search_path;
RESET ROLE;
SELECT who, count(*) > 0 AS ran FROM public.regress_pwned GROUP BY who ORDER BY who;
SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = 'regress_pacelc_attacker';
DROP FUNCTION public.regress_msg_ok(jsonb), public.regress_probe(jsonb);

-- clean up: nothing of the test stays behind
SELECT pacelc.drop_queue(name) FROM pacelc.queues WHERE name ILIKE 'sec%' ORDER BY name;
DELETE FROM pacelc.reservation_data WHERE sku IN ('sec-1', 'sec-a', 'sec-o');
DELETE FROM pacelc.idempotency_keys WHERE key LIKE 'sec-%' OR key LIKE 'victim-%';
DELETE FROM pacelc.skus WHERE sku IN ('sec-1', 'sec-a', 'sec-o');
DROP SCHEMA regress_sec CASCADE;
DROP SCHEMA regress_closed CASCADE;
DROP COLLATION public.regress_ci;
DROP FUNCTION public.regress_su_h(jsonb), public.regress_err(text), public.regress_err_n(text);
DROP TABLE public.regress_pwned;
DROP ROLE regress_pacelc_attacker, regress_pacelc_definer,
	regress_pacelc_mon, regress_pacelc_adm;
DROP EXTENSION pacelc;
