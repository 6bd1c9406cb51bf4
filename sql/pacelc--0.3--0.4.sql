/* pacelc 0.3 -> 0.4 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION pacelc UPDATE TO '0.4'" to load this file. \quit

/* ======================================================================
 * Section A: escrow that survives two-phase commit (issue 17)
 * ====================================================================== */

/*
 * No SQL object changes: the escrow of prepared transactions is in the
 * library (src/prepared.c, src/escrow.c).
 */

/* ======================================================================
 * Section B: scaling out on Citus (issue 17)
 * ====================================================================== */

/* ======================================================================
 * Section C: the queue: speed and bloat immunity (issue 15)
 * ====================================================================== */

/*
 * ack(), nack() and retry() checked the locked message's state each in a
 * copy of their own: one piece now serves them (issue 16), same messages
 * and SQLSTATEs, in the same order after the same argument checks.
 */
CREATE FUNCTION pacelc_private.require_state(m pacelc.messages, want pg_catalog.text)
	RETURNS void
	LANGUAGE plpgsql
	AS $$
BEGIN
	IF m.state OPERATOR(pg_catalog.=) want THEN
		RETURN;
	END IF;
	IF want OPERATOR(pg_catalog.=) 'dead' THEN
		RAISE EXCEPTION 'message % is not a dead letter', m.id
			USING ERRCODE = 'invalid_parameter_value', DETAIL = pg_catalog.format('It is %s.', m.state);
	END IF;
	RAISE EXCEPTION 'message % is already %', m.id, m.state USING ERRCODE = 'invalid_parameter_value';
END
$$;

CREATE OR REPLACE FUNCTION pacelc_private.ack(caller pg_catalog.oid, id pg_catalog.int8) RETURNS void
	LANGUAGE plpgsql
	AS $$
DECLARE
	m	pacelc.messages := pacelc_private.message_for_update(caller, id);
BEGIN
	PERFORM pacelc_private.require_state(m, 'ready');
	UPDATE pacelc.messages x
	   SET state = 'done', done_at = pg_catalog.clock_timestamp(), leased_until = NULL
	 WHERE x.id OPERATOR(pg_catalog.=) m.id;
END
$$;

CREATE OR REPLACE FUNCTION pacelc_private.nack(caller pg_catalog.oid, id pg_catalog.int8,
											   error pg_catalog.text, retry_in pg_catalog.interval) RETURNS void
	LANGUAGE plpgsql
	AS $$
DECLARE
	m	pacelc.messages := pacelc_private.message_for_update(caller, id);
BEGIN
	IF error IS NULL THEN
		RAISE EXCEPTION 'error must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	PERFORM pacelc_private.check_interval(retry_in, 'retry_in', true, 1);
	PERFORM pacelc_private.require_state(m, 'ready');
	PERFORM pacelc._fail(m, error, NULL, retry_in, greatest(m.attempts, 1));
	PERFORM pacelc._wake_worker_at_commit();
END
$$;

CREATE OR REPLACE FUNCTION pacelc_private.retry(caller pg_catalog.oid, id pg_catalog.int8) RETURNS void
	LANGUAGE plpgsql
	AS $$
DECLARE
	m	pacelc.messages := pacelc_private.message_for_update(caller, id);
BEGIN
	PERFORM pacelc_private.require_state(m, 'dead');
	UPDATE pacelc.messages x SET state = 'ready', attempts = 0, run_at = pg_catalog.clock_timestamp(),
		   leased_until = NULL
	 WHERE x.id OPERATOR(pg_catalog.=) m.id;
	PERFORM pacelc._wake_worker_at_commit();
END
$$;

/* ======================================================================
 * Section D: the reserve path (issue 15)
 * ====================================================================== */

/* ======================================================================
 * Section E: structure (issue 16)
 * ====================================================================== */

/*
 * Each limit in one place, the library's (src/support.h): the functions
 * check their arguments in C, and the tables' constraints call the same C.
 * A later change of a limit ships in the library, not in a script.
 */
CREATE FUNCTION pacelc_private.valid_sku(sku pg_catalog.text) RETURNS pg_catalog.bool
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'pacelc_private_valid_sku';
CREATE FUNCTION pacelc_private.valid_key(key pg_catalog.text) RETURNS pg_catalog.bool
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'pacelc_private_valid_key';
CREATE FUNCTION pacelc_private.valid_queue_name(name pg_catalog.text) RETURNS pg_catalog.bool
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'pacelc_private_valid_queue_name';
/* create_queue()'s error for a name valid_queue_name() refuses (22023) */
CREATE FUNCTION pacelc_private.check_queue_name(name pg_catalog.text) RETURNS void
	LANGUAGE C STRICT
	AS 'MODULE_PATHNAME', 'pacelc_private_check_queue_name';

ALTER TABLE pacelc.skus DROP CONSTRAINT skus_sku_length,
	ADD CONSTRAINT skus_sku_length CHECK (pacelc_private.valid_sku(sku));
ALTER TABLE pacelc.idempotency_keys DROP CONSTRAINT idempotency_key_length,
	ADD CONSTRAINT idempotency_key_length CHECK (pacelc_private.valid_key(key));
ALTER TABLE pacelc.queues DROP CONSTRAINT queue_name_valid,
	ADD CONSTRAINT queue_name_valid CHECK (pacelc_private.valid_queue_name(name));

/*
 * What every update script ends with (Section Z): each function of the
 * extension pins its search_path, none is executable by PUBLIC.  One
 * function, so that a later script calls it instead of copying it.
 */
CREATE FUNCTION pacelc_private.pin_functions() RETURNS void
	LANGUAGE plpgsql
	AS $$
DECLARE
	f	pg_catalog.regprocedure;
BEGIN
	FOR f IN SELECT p.oid FROM pg_catalog.pg_proc p
			  WHERE p.pronamespace OPERATOR(pg_catalog.=) ANY
					(ARRAY['pacelc'::pg_catalog.regnamespace, 'pacelc_private'::pg_catalog.regnamespace])
	LOOP
		EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog, pacelc, pg_temp', f);
	END LOOP;
	REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pacelc FROM PUBLIC;
	REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pacelc_private FROM PUBLIC;
END
$$;

/* ======================================================================
 * Section Z: every function pins its search_path; the shipped roles'
 * rights.  Last, so that it covers the functions of every section.
 * ====================================================================== */

SELECT pacelc_private.pin_functions();

GRANT USAGE ON SCHEMA pacelc TO pacelc_app, pacelc_monitor;
GRANT SELECT ON pacelc.stock, pacelc.reservations, pacelc.queue_status, pacelc.dead_letters,
	pacelc.replica_status TO pacelc_app, pacelc_monitor;
/* the view replica_status calls it as the reader */
GRANT EXECUTE ON FUNCTION pacelc._replica_status() TO pacelc_app, pacelc_monitor;
GRANT EXECUTE ON FUNCTION
	pacelc.available(text), pacelc.next_expiry(), pacelc.verify(), pacelc.stats(),
	pacelc.commit_lsn(), pacelc.replay_lsn(), pacelc.wait_for_lsn(pg_lsn, interval)
	TO pacelc_app, pacelc_monitor;
GRANT EXECUTE ON FUNCTION
	pacelc.set_stock(text, bigint), pacelc.add_stock(text, bigint),
	pacelc.reserve(text, bigint, interval, text, jsonb),
	pacelc.try_reserve(text, bigint, interval, text, jsonb),
	pacelc.reserve_all(text[], bigint[], interval, text, jsonb),
	pacelc.confirm(bigint), pacelc.release(bigint),
	pacelc.create_queue(text, regprocedure, integer, interval, integer),
	pacelc.alter_queue(text, regprocedure, integer, interval, boolean, regrole, integer),
	pacelc.drop_queue(text), pacelc.grant_queue(text, text, regrole),
	pacelc.revoke_queue(text, text, regrole),
	pacelc.enqueue(text, jsonb, interval, text),
	pacelc.dequeue(text, integer, interval), pacelc.ack(bigint),
	pacelc.nack(bigint, text, interval), pacelc.retry(bigint),
	pacelc.purge_done(interval)
	TO pacelc_app;
GRANT EXECUTE ON FUNCTION pacelc.expire_holds(integer), pacelc.fold_confirmed(integer)
	TO pacelc_admin;
