/* pacelc 0.2 -> 0.3 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION pacelc UPDATE TO '0.3'" to load this file. \quit

/*
 * Every function of pacelc pins search_path = pg_catalog, pacelc, pg_temp
 * (pg_temp last, explicitly: otherwise the caller's temporary schema is
 * searched first for relation and type names).
 */

/* ======================================================================
 * Section A: privileges and isolation between applications (issue 10)
 * ====================================================================== */

/*
 * The worker keeps using these tables while the update runs.  Take them all
 * first, without queueing (a round of the worker holds some of them and
 * may ask for the others: waiting for one table at a time could deadlock).
 */
DO $locks$
DECLARE
	deadline pg_catalog.timestamptz := pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) '60 s';
BEGIN
	LOOP
		BEGIN
			LOCK TABLE pacelc.queues, pacelc.messages, pacelc.message_errors,
				pacelc.skus, pacelc.reservation_data, pacelc.idempotency_keys
				IN ACCESS EXCLUSIVE MODE NOWAIT;
			EXIT;
		EXCEPTION WHEN lock_not_available THEN
			IF pg_catalog.clock_timestamp() OPERATOR(pg_catalog.>) deadline THEN
				RAISE;
			END IF;
			PERFORM pg_catalog.pg_sleep(0.02);
		END;
	END LOOP;
END
$locks$;

/*
 * Application roles, shipped with the extension (roles are cluster-wide, so
 * another database's pacelc may have created them already):
 *	pacelc_app		uses the API: stock, reservations (its own), queues (its
 *					own, and those granted to it), LSN tokens
 *	pacelc_monitor	reads the views and verify()/stats(): every queue's
 *					counts, no payloads
 *	pacelc_admin	both, and acts for every role: ends anyone's holds,
 *					consumes and purges every queue, runs the housekeeping
 */
DO $roles$
DECLARE
	r	pg_catalog.text;
BEGIN
	FOREACH r IN ARRAY ARRAY['pacelc_app', 'pacelc_monitor', 'pacelc_admin']
	LOOP
		IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
			EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
		END IF;
	END LOOP;
	IF NOT pg_catalog.pg_has_role('pacelc_admin', 'pacelc_app', 'MEMBER') THEN
		GRANT pacelc_app TO pacelc_admin;
	END IF;
	IF NOT pg_catalog.pg_has_role('pacelc_admin', 'pacelc_monitor', 'MEMBER') THEN
		GRANT pacelc_monitor TO pacelc_admin;
	END IF;
END
$roles$;

/*
 * Implementations of the entry points written in PL/pgSQL live here, with
 * the caller's OID as their first argument.  No one but the owner has
 * USAGE; the entry points in schema pacelc reach them through
 * pacelc_call_private (src/privilege.c).
 */
CREATE SCHEMA pacelc_private;
REVOKE ALL ON SCHEMA pacelc_private FROM PUBLIC;

/* ---- tables ---- */

/* A reservation belongs to the role that made it (NULL: made before 0.3). */
ALTER TABLE pacelc.reservation_data ADD COLUMN owner pg_catalog.regrole;

/*
 * An idempotency key belongs to the role that used it: another application
 * using the same key has a key of its own (keys made before 0.3 have no
 * owner and answer every role, as before).
 */
ALTER TABLE pacelc.idempotency_keys ADD COLUMN owner pg_catalog.regrole;
ALTER TABLE pacelc.idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
CREATE UNIQUE INDEX idempotency_keys_key_owner ON pacelc.idempotency_keys (key, owner)
	NULLS NOT DISTINCT;

/* Rights on a queue that its owner granted to other roles. */
CREATE TABLE pacelc.queue_grants (
	queue		pg_catalog.text NOT NULL,
	grantee		pg_catalog.regrole NOT NULL,
	produce		pg_catalog.bool NOT NULL DEFAULT false,
	consume		pg_catalog.bool NOT NULL DEFAULT false,
	PRIMARY KEY (queue, grantee)
);
SELECT pg_catalog.pg_extension_config_dump('pacelc.queue_grants', '');

/*
 * Handlers are stored as the text of their schema-qualified signature,
 * resolved with to_regprocedure() when called: an OID column
 * (regprocedure) makes pg_upgrade refuse the cluster, since function OIDs
 * are not preserved.
 */
CREATE FUNCTION pacelc_private.handler_signature(handler pg_catalog.regprocedure)
	RETURNS pg_catalog.text
	LANGUAGE sql STABLE STRICT
	RETURN (SELECT pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.'
				   OPERATOR(pg_catalog.||) pg_catalog.quote_ident(p.proname)
				   OPERATOR(pg_catalog.||) '(pg_catalog.jsonb)'
			  FROM pg_catalog.pg_proc p
			  JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
			 WHERE p.oid OPERATOR(pg_catalog.=) handler);

DROP VIEW pacelc.queue_status;
ALTER TABLE pacelc.queues ALTER COLUMN handler TYPE pg_catalog.text
	USING pacelc_private.handler_signature(handler);

/*
 * The built-in queue "expired" is created by CREATE EXTENSION, and a
 * restore then loads the dumped row too: the dumped settings (owner,
 * handler, max_attempts, backoff, concurrency) win instead of failing on
 * the key.
 */
CREATE FUNCTION pacelc_private.merge_builtin_queue() RETURNS trigger
	LANGUAGE plpgsql
	AS $$
BEGIN
	UPDATE pacelc.queues q
	   SET handler = NEW.handler, owner = NEW.owner, max_attempts = NEW.max_attempts,
		   backoff = NEW.backoff, created_at = NEW.created_at,
		   concurrency = NEW.concurrency
	 WHERE q.name OPERATOR(pg_catalog.=) NEW.name;
	IF FOUND THEN
		RETURN NULL;
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER queues_merge_builtin BEFORE INSERT ON pacelc.queues
	FOR EACH ROW WHEN (NEW.name = 'expired')
	EXECUTE FUNCTION pacelc_private.merge_builtin_queue();
SELECT pg_catalog.pg_extension_config_dump('pacelc.queues', '');

/*
 * The tables are the extension's: no role but their owner sees a row, even
 * if someone grants SELECT ON ALL TABLES IN SCHEMA pacelc.  (Applications
 * read the views, which filter by role.)
 */
ALTER TABLE pacelc.skus ENABLE ROW LEVEL SECURITY;
ALTER TABLE pacelc.reservation_data ENABLE ROW LEVEL SECURITY;
ALTER TABLE pacelc.idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE pacelc.queues ENABLE ROW LEVEL SECURITY;
ALTER TABLE pacelc.messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE pacelc.message_errors ENABLE ROW LEVEL SECURITY;
ALTER TABLE pacelc.queue_grants ENABLE ROW LEVEL SECURITY;

/* ---- helpers in C (src/privilege.c, src/queue.c) ---- */

CREATE FUNCTION pacelc_private.is_admin(role pg_catalog.oid) RETURNS pg_catalog.bool
	LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'pacelc_private_is_admin';

CREATE FUNCTION pacelc_private.check_interval(iv pg_catalog.interval, name pg_catalog.text,
											  allow_zero pg_catalog.bool, max_years pg_catalog.int4)
	RETURNS void
	LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'pacelc_private_check_interval';

CREATE FUNCTION pacelc_private.lock_queue(name pg_catalog.text) RETURNS void
	LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'pacelc_private_lock_queue';

CREATE FUNCTION pacelc_private.queue_allowed(caller pg_catalog.oid, queue pg_catalog.text,
											 owner pg_catalog.oid, consume pg_catalog.bool)
	RETURNS pg_catalog.bool
	LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'pacelc_private_queue_allowed';

/* Does caller act for role (the role itself, a member of it, or an admin)? */
CREATE FUNCTION pacelc_private.acts_for(caller pg_catalog.oid, role pg_catalog.oid)
	RETURNS pg_catalog.bool
	LANGUAGE sql STABLE STRICT
	RETURN pg_catalog.pg_has_role(caller, role, 'USAGE') OR pacelc_private.is_admin(caller);

/* ---- queues ---- */

/*
 * Checks a queue's settings.  A handler takes one jsonb argument and runs
 * as the queue's owner, which must not be a superuser, must be allowed to
 * look into the handler's schema and to execute it; a SECURITY DEFINER
 * handler owned by a superuser would run as that superuser and is refused.
 */
CREATE FUNCTION pacelc_private.check_queue_args(name pg_catalog.text,
												handler pg_catalog.regprocedure,
												max_attempts pg_catalog.int4,
												backoff pg_catalog.interval,
												owner pg_catalog.oid) RETURNS void
	LANGUAGE plpgsql
	AS $$
DECLARE
	p	record;
BEGIN
	IF name IS NULL OR max_attempts IS NULL OR backoff IS NULL THEN
		RAISE EXCEPTION '% must not be null',
			CASE WHEN name IS NULL THEN 'queue name' WHEN max_attempts IS NULL THEN 'max_attempts'
				 ELSE 'backoff' END
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF name OPERATOR(pg_catalog.!~) '^[A-Za-z_][A-Za-z0-9_.-]{0,55}$' THEN
		RAISE EXCEPTION 'invalid queue name "%"', name
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A queue name starts with a letter or underscore and has at most 56 letters, digits, underscores, dots or dashes.';
	END IF;
	IF max_attempts OPERATOR(pg_catalog.<) 1 THEN
		RAISE EXCEPTION 'max_attempts must be at least 1' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM pacelc_private.check_interval(backoff, 'backoff', true, 1);
	IF handler IS NULL THEN
		RETURN;
	END IF;
	SELECT f.prokind, f.pronargs, f.proargtypes[0] AS argtype, f.pronamespace,
		   f.prosecdef, o.rolsuper AS owned_by_superuser,
		   n.nspname OPERATOR(pg_catalog.~) '^pg_(toast_)?temp_' AS temporary
	  INTO p
	  FROM pg_catalog.pg_proc f
	  JOIN pg_catalog.pg_authid o ON o.oid OPERATOR(pg_catalog.=) f.proowner
	  JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) f.pronamespace
	 WHERE f.oid OPERATOR(pg_catalog.=) handler;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'function with OID % does not exist', handler::pg_catalog.oid
			USING ERRCODE = 'undefined_function';
	END IF;
	IF p.prokind OPERATOR(pg_catalog.<>) 'f' OR p.pronargs OPERATOR(pg_catalog.<>) 1
	   OR p.argtype OPERATOR(pg_catalog.<>) 'pg_catalog.jsonb'::pg_catalog.regtype THEN
		RAISE EXCEPTION 'function % cannot be a queue handler', handler
			USING ERRCODE = 'undefined_function',
				  DETAIL = 'A handler is a function taking exactly one argument of type jsonb.';
	END IF;
	IF p.temporary THEN
		RAISE EXCEPTION 'function % cannot be a queue handler', handler
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'It lives in a temporary schema, which another session may reuse.';
	END IF;
	IF (SELECT r.rolsuper FROM pg_catalog.pg_authid r WHERE r.oid OPERATOR(pg_catalog.=) owner) THEN
		RAISE EXCEPTION 'a queue handler must not run as a superuser'
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'Handlers run as the role that installs them.',
				  HINT = 'Install the handler as an ordinary role, e.g. after SET ROLE.';
	END IF;
	IF p.prosecdef AND p.owned_by_superuser THEN
		RAISE EXCEPTION 'function % cannot be a queue handler', handler
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'It is SECURITY DEFINER and owned by a superuser, so it would run as a superuser.';
	END IF;
	IF NOT pg_catalog.has_schema_privilege(owner, p.pronamespace, 'USAGE')
	   OR NOT pg_catalog.has_function_privilege(owner, handler::pg_catalog.oid, 'EXECUTE') THEN
		RAISE EXCEPTION 'permission denied for function %', handler
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = pg_catalog.format('Role "%s" needs USAGE on the function''s schema and EXECUTE on the function.',
											 owner::pg_catalog.regrole);
	END IF;
END
$$;

/* Locks a queue's row; raises 42704 if it does not exist, 42501 if the caller may not change it. */
CREATE FUNCTION pacelc_private.owned_queue(caller pg_catalog.oid, name pg_catalog.text)
	RETURNS pacelc.queues
	LANGUAGE plpgsql
	AS $$
DECLARE
	q	pacelc.queues;
BEGIN
	IF name IS NULL THEN
		RAISE EXCEPTION 'queue name must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT * INTO q FROM pacelc.queues x WHERE x.name OPERATOR(pg_catalog.=) owned_queue.name FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'queue "%" does not exist', name USING ERRCODE = 'undefined_object';
	END IF;
	IF NOT pacelc_private.acts_for(caller, q.owner::pg_catalog.oid) THEN
		RAISE EXCEPTION 'must be the owner of queue "%"', name USING ERRCODE = 'insufficient_privilege';
	END IF;
	RETURN q;
END
$$;

/* concurrency: NULL is the setting pacelc.queue_concurrency */
CREATE FUNCTION pacelc_private.check_concurrency(concurrency pg_catalog.int4) RETURNS void
	LANGUAGE plpgsql IMMUTABLE
	AS $$
BEGIN
	IF concurrency NOT BETWEEN 1 AND 64 THEN
		RAISE EXCEPTION 'concurrency must be between 1 and 64' USING ERRCODE = 'invalid_parameter_value';
	END IF;
END
$$;

CREATE FUNCTION pacelc_private.create_queue(caller pg_catalog.oid, name pg_catalog.text,
											handler pg_catalog.regprocedure,
											max_attempts pg_catalog.int4,
											backoff pg_catalog.interval,
											concurrency pg_catalog.int4) RETURNS void
	LANGUAGE plpgsql
	AS $$
BEGIN
	PERFORM pacelc_private.check_queue_args(name, handler, max_attempts, backoff, caller);
	PERFORM pacelc_private.check_concurrency(concurrency);
	/* never through the insert: a restore merges the row of "expired" (trigger) */
	IF EXISTS (SELECT FROM pacelc.queues q WHERE q.name OPERATOR(pg_catalog.=) create_queue.name) THEN
		RAISE unique_violation;
	END IF;
	INSERT INTO pacelc.queues (name, handler, owner, max_attempts, backoff, concurrency)
	VALUES (name, pacelc_private.handler_signature(handler), caller::pg_catalog.regrole,
			max_attempts, backoff, concurrency);
	/* leftovers of an earlier queue of this name (see drop_queue) */
	DELETE FROM pacelc.message_errors e USING pacelc.messages m
	 WHERE m.queue OPERATOR(pg_catalog.=) create_queue.name AND e.message_id OPERATOR(pg_catalog.=) m.id;
	DELETE FROM pacelc.messages m WHERE m.queue OPERATOR(pg_catalog.=) create_queue.name;
	DELETE FROM pacelc.queue_grants g WHERE g.queue OPERATOR(pg_catalog.=) create_queue.name;
	PERFORM pacelc._wake_worker_at_commit();
EXCEPTION WHEN unique_violation THEN
	RAISE EXCEPTION 'queue "%" already exists', name
		USING ERRCODE = 'duplicate_object',
			  HINT = 'Use pacelc.alter_queue() to change it.';
END
$$;

/*
 * Only the owner (its members, pacelc_admin) may change a queue.
 * Installing a handler makes the caller the owner, since the handler will
 * run as that role; new_owner hands a queue over, to a role the caller is
 * a member of.
 */
CREATE FUNCTION pacelc_private.alter_queue(caller pg_catalog.oid, name pg_catalog.text,
										   handler pg_catalog.regprocedure,
										   max_attempts pg_catalog.int4,
										   backoff pg_catalog.interval,
										   drop_handler pg_catalog.bool,
										   new_owner pg_catalog.regrole,
										   concurrency pg_catalog.int4) RETURNS void
	LANGUAGE plpgsql
	AS $$
DECLARE
	q		pacelc.queues;
	h		pg_catalog.regprocedure;
BEGIN
	/* 0: back to the setting pacelc.queue_concurrency */
	IF concurrency IS DISTINCT FROM 0 THEN
		PERFORM pacelc_private.check_concurrency(concurrency);
	END IF;
	IF drop_handler IS NULL THEN
		RAISE EXCEPTION 'drop_handler must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	q := pacelc_private.owned_queue(caller, name);
	IF new_owner IS NOT NULL AND NOT pacelc_private.is_admin(caller)
	   AND NOT pg_catalog.pg_has_role(caller, new_owner::pg_catalog.oid, 'MEMBER') THEN
		RAISE EXCEPTION 'must be a member of role "%" to hand queue "%" over to it', new_owner, name
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'The handler of a queue runs as the queue''s owner.';
	END IF;
	q.max_attempts := coalesce(max_attempts, q.max_attempts);
	q.backoff := coalesce(backoff, q.backoff);
	h := pg_catalog.to_regprocedure(q.handler);
	IF drop_handler THEN
		h := NULL;
	ELSIF handler IS NOT NULL THEN
		h := handler;
		q.owner := caller::pg_catalog.regrole;
	END IF;
	IF new_owner IS NOT NULL THEN
		q.owner := new_owner;
	END IF;
	PERFORM pacelc_private.check_queue_args(q.name, h, q.max_attempts, q.backoff,
											q.owner::pg_catalog.oid);
	UPDATE pacelc.queues x SET handler = pacelc_private.handler_signature(h), owner = q.owner,
		   max_attempts = q.max_attempts, backoff = q.backoff,
		   concurrency = CASE WHEN alter_queue.concurrency IS NULL THEN x.concurrency
							  ELSE nullif(alter_queue.concurrency, 0) END
	 WHERE x.name OPERATOR(pg_catalog.=) q.name;
	PERFORM pacelc._wake_worker_at_commit();
END
$$;

/*
 * Drops a queue with its messages and grants.  It first takes the queue's
 * own lock (src/queue.c), which waits until no transaction is enqueueing
 * into this queue and keeps new enqueues into it out until the drop
 * commits; other queues and the worker are never blocked.  The lock is
 * asked for without queueing (NOWAIT, again and again, for lock_timeout or
 * 10 s: 55P03).
 */
CREATE FUNCTION pacelc_private.drop_queue(caller pg_catalog.oid, name pg_catalog.text) RETURNS void
	LANGUAGE plpgsql
	AS $$
DECLARE
	q	pacelc.queues;
BEGIN
	IF name OPERATOR(pg_catalog.=) 'expired' THEN
		RAISE EXCEPTION 'cannot drop the built-in queue "expired"' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	q := pacelc_private.owned_queue(caller, name);
	PERFORM pacelc_private.lock_queue(q.name);
	DELETE FROM pacelc.message_errors e USING pacelc.messages m
	 WHERE m.queue OPERATOR(pg_catalog.=) q.name AND e.message_id OPERATOR(pg_catalog.=) m.id;
	DELETE FROM pacelc.messages m WHERE m.queue OPERATOR(pg_catalog.=) q.name;
	DELETE FROM pacelc.queue_grants g WHERE g.queue OPERATOR(pg_catalog.=) q.name;
	DELETE FROM pacelc.queues x WHERE x.name OPERATOR(pg_catalog.=) q.name;
END
$$;

/* grant_queue / revoke_queue: 'produce', 'consume' or 'all'. */
CREATE FUNCTION pacelc_private.queue_privilege(privilege pg_catalog.text,
											   OUT produce pg_catalog.bool, OUT consume pg_catalog.bool)
	LANGUAGE plpgsql IMMUTABLE
	AS $$
BEGIN
	IF privilege IS NULL THEN
		RAISE EXCEPTION 'privilege must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	produce := pg_catalog.lower(privilege) OPERATOR(pg_catalog.=) ANY (ARRAY['produce', 'all']);
	consume := pg_catalog.lower(privilege) OPERATOR(pg_catalog.=) ANY (ARRAY['consume', 'all']);
	IF NOT (produce OR consume) THEN
		RAISE EXCEPTION 'unrecognized queue privilege "%"', privilege
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use ''produce'', ''consume'' or ''all''.';
	END IF;
END
$$;

/* Grants (granting) or revokes privilege on a queue the caller owns. */
CREATE FUNCTION pacelc_private.set_queue_grant(caller pg_catalog.oid, queue pg_catalog.text,
											   privilege pg_catalog.text,
											   grantee pg_catalog.regrole,
											   granting pg_catalog.bool)
	RETURNS void
	LANGUAGE plpgsql
	AS $$
DECLARE
	q	pacelc.queues := pacelc_private.owned_queue(caller, queue);
	p	record := pacelc_private.queue_privilege(privilege);
BEGIN
	IF grantee IS NULL THEN
		RAISE EXCEPTION 'grantee must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	INSERT INTO pacelc.queue_grants AS g (queue, grantee, produce, consume)
	VALUES (q.name, grantee, granting AND p.produce, granting AND p.consume)
	ON CONFLICT ON CONSTRAINT queue_grants_pkey DO UPDATE
	   SET produce = CASE WHEN granting THEN g.produce OR p.produce ELSE g.produce AND NOT p.produce END,
		   consume = CASE WHEN granting THEN g.consume OR p.consume ELSE g.consume AND NOT p.consume END;
	DELETE FROM pacelc.queue_grants g
	 WHERE g.queue OPERATOR(pg_catalog.=) q.name AND NOT g.produce AND NOT g.consume;
END
$$;

CREATE FUNCTION pacelc_private.grant_queue(caller pg_catalog.oid, queue pg_catalog.text,
										   privilege pg_catalog.text, grantee pg_catalog.regrole)
	RETURNS void
	LANGUAGE sql
	RETURN pacelc_private.set_queue_grant(caller, queue, privilege, grantee, true);

CREATE FUNCTION pacelc_private.revoke_queue(caller pg_catalog.oid, queue pg_catalog.text,
											privilege pg_catalog.text, grantee pg_catalog.regrole)
	RETURNS void
	LANGUAGE sql
	RETURN pacelc_private.set_queue_grant(caller, queue, privilege, grantee, false);

/* A queue the caller may consume (42704 / 42501 otherwise). */
CREATE FUNCTION pacelc_private.consumable_queue(caller pg_catalog.oid, name pg_catalog.text)
	RETURNS pacelc.queues
	LANGUAGE plpgsql
	AS $$
DECLARE
	q	pacelc.queues;
BEGIN
	SELECT * INTO q FROM pacelc.queues x WHERE x.name OPERATOR(pg_catalog.=) consumable_queue.name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'queue "%" does not exist', name USING ERRCODE = 'undefined_object';
	END IF;
	IF NOT pacelc_private.queue_allowed(caller, q.name, q.owner::pg_catalog.oid, true) THEN
		RAISE EXCEPTION 'permission denied to consume from queue "%"', name
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'The queue''s owner can grant it with pacelc.grant_queue().';
	END IF;
	RETURN q;
END
$$;

/* For external consumers: leases up to batch due messages (SKIP LOCKED). */
CREATE FUNCTION pacelc_private.dequeue(caller pg_catalog.oid, queue pg_catalog.text,
									   batch pg_catalog.int4, lease pg_catalog.interval)
	RETURNS SETOF pacelc.messages
	LANGUAGE plpgsql
	AS $$
DECLARE
	q	pacelc.queues;
BEGIN
	IF queue IS NULL OR batch IS NULL OR lease IS NULL THEN
		RAISE EXCEPTION 'queue, batch and lease must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF batch OPERATOR(pg_catalog.<) 1 THEN
		RAISE EXCEPTION 'batch must be positive' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM pacelc_private.check_interval(lease, 'lease', false, 1);
	q := pacelc_private.consumable_queue(caller, queue);
	WITH exhausted AS (
		SELECT m.id, m.attempts FROM pacelc.messages m
		 WHERE m.queue OPERATOR(pg_catalog.=) dequeue.queue AND m.state OPERATOR(pg_catalog.=) 'ready'
		   AND m.run_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp()
		   AND m.leased_until IS NOT NULL AND m.attempts OPERATOR(pg_catalog.>=) q.max_attempts
		   FOR UPDATE SKIP LOCKED),
	dead AS (
		UPDATE pacelc.messages m
		   SET state = 'dead', leased_until = NULL,
			   last_error = 'lease expired without ack or nack', last_sqlstate = NULL,
			   last_error_at = pg_catalog.clock_timestamp()
		  FROM exhausted e WHERE m.id OPERATOR(pg_catalog.=) e.id
		RETURNING m.id, m.attempts)
	INSERT INTO pacelc.message_errors (message_id, attempt, error)
	SELECT d.id, d.attempts, 'lease expired without ack or nack' FROM dead d
	ON CONFLICT (message_id, attempt) DO NOTHING;
	RETURN QUERY
	WITH c AS (
		SELECT m.id FROM pacelc.messages m
		 WHERE m.queue OPERATOR(pg_catalog.=) dequeue.queue AND m.state OPERATOR(pg_catalog.=) 'ready'
		   AND m.run_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp()
		 ORDER BY m.run_at, m.id
		 LIMIT batch
		   FOR UPDATE SKIP LOCKED)
	UPDATE pacelc.messages m
	   SET attempts = m.attempts OPERATOR(pg_catalog.+) 1,
		   leased_until = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) lease,
		   run_at = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) lease
	  FROM c WHERE m.id OPERATOR(pg_catalog.=) c.id
	RETURNING m.*;
END
$$;

/* A message of a queue the caller may consume, locked. */
CREATE FUNCTION pacelc_private.message_for_update(caller pg_catalog.oid, msg pg_catalog.int8)
	RETURNS pacelc.messages
	LANGUAGE plpgsql
	AS $$
DECLARE
	m	pacelc.messages;
	q	pacelc.queues;
BEGIN
	IF msg IS NULL THEN
		RAISE EXCEPTION 'id must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT * INTO m FROM pacelc.messages x WHERE x.id OPERATOR(pg_catalog.=) msg FOR UPDATE;
	IF FOUND THEN
		SELECT * INTO q FROM pacelc.queues x WHERE x.name OPERATOR(pg_catalog.=) m.queue;
	END IF;
	IF NOT FOUND OR NOT pacelc_private.queue_allowed(caller, q.name, q.owner::pg_catalog.oid, true) THEN
		/* another application's message does not exist, as far as the caller can tell */
		IF m.id IS NOT NULL AND pacelc_private.is_admin(caller) THEN
			RETURN m;
		END IF;
		RAISE EXCEPTION 'message % does not exist', msg USING ERRCODE = 'undefined_object';
	END IF;
	RETURN m;
END
$$;

CREATE FUNCTION pacelc_private.ack(caller pg_catalog.oid, id pg_catalog.int8) RETURNS void
	LANGUAGE plpgsql
	AS $$
DECLARE
	m	pacelc.messages := pacelc_private.message_for_update(caller, id);
BEGIN
	IF m.state OPERATOR(pg_catalog.<>) 'ready' THEN
		RAISE EXCEPTION 'message % is already %', m.id, m.state USING ERRCODE = 'invalid_parameter_value';
	END IF;
	UPDATE pacelc.messages x
	   SET state = 'done', done_at = pg_catalog.clock_timestamp(), leased_until = NULL
	 WHERE x.id OPERATOR(pg_catalog.=) m.id;
END
$$;

CREATE FUNCTION pacelc_private.nack(caller pg_catalog.oid, id pg_catalog.int8,
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
	IF m.state OPERATOR(pg_catalog.<>) 'ready' THEN
		RAISE EXCEPTION 'message % is already %', m.id, m.state USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM pacelc._fail(m, error, NULL, retry_in, greatest(m.attempts, 1));
	PERFORM pacelc._wake_worker_at_commit();
END
$$;

CREATE FUNCTION pacelc_private.retry(caller pg_catalog.oid, id pg_catalog.int8) RETURNS void
	LANGUAGE plpgsql
	AS $$
DECLARE
	m	pacelc.messages := pacelc_private.message_for_update(caller, id);
BEGIN
	IF m.state OPERATOR(pg_catalog.<>) 'dead' THEN
		RAISE EXCEPTION 'message % is not a dead letter', m.id
			USING ERRCODE = 'invalid_parameter_value', DETAIL = pg_catalog.format('It is %s.', m.state);
	END IF;
	UPDATE pacelc.messages x SET state = 'ready', attempts = 0, run_at = pg_catalog.clock_timestamp(),
		   leased_until = NULL
	 WHERE x.id OPERATOR(pg_catalog.=) m.id;
	PERFORM pacelc._wake_worker_at_commit();
END
$$;

/* Deletes the done messages of the queues the caller owns (all: pacelc_admin, the worker). */
CREATE FUNCTION pacelc_private.purge_done(caller pg_catalog.oid, older_than pg_catalog.interval)
	RETURNS pg_catalog.int8
	LANGUAGE plpgsql
	AS $$
DECLARE
	n		pg_catalog.int8;
	admin	pg_catalog.bool := pacelc_private.is_admin(caller);
BEGIN
	IF older_than IS NULL THEN
		RAISE EXCEPTION 'older_than must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	WITH d AS (DELETE FROM pacelc.messages m
				WHERE m.state OPERATOR(pg_catalog.=) 'done'
				  AND m.done_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) older_than)
				  AND (admin OR m.queue OPERATOR(pg_catalog.=) ANY (
						SELECT q.name FROM pacelc.queues q
						 WHERE pg_catalog.pg_has_role(caller, q.owner::pg_catalog.oid, 'USAGE')))
			   RETURNING m.id),
		 e AS (DELETE FROM pacelc.message_errors x WHERE x.message_id OPERATOR(pg_catalog.=) ANY (SELECT d.id FROM d))
	SELECT pg_catalog.count(*) INTO n FROM d;
	RETURN n;
END
$$;

/* Queues a role may see: owned, granted, or any for monitors and admins. */
CREATE FUNCTION pacelc_private.sees_queue(role pg_catalog.oid, q pacelc.queues)
	RETURNS pg_catalog.bool
	LANGUAGE sql STABLE
	RETURN pg_catalog.pg_has_role(role, q.owner::pg_catalog.oid, 'USAGE')
		OR pg_catalog.pg_has_role(role, 'pacelc_monitor', 'USAGE')
		OR EXISTS (SELECT FROM pacelc.queue_grants g
					WHERE g.queue OPERATOR(pg_catalog.=) q.name
					  AND pg_catalog.pg_has_role(role, g.grantee::pg_catalog.oid, 'USAGE'));

CREATE FUNCTION pacelc_private.stats(caller pg_catalog.oid,
									 OUT queue pg_catalog.text, OUT depth pg_catalog.int8,
									 OUT in_flight pg_catalog.int8, OUT done pg_catalog.int8,
									 OUT dead pg_catalog.int8, OUT failed_attempts pg_catalog.int8,
									 OUT oldest_age pg_catalog.interval, OUT attempts pg_catalog.int8)
	RETURNS SETOF record
	LANGUAGE plpgsql STABLE
	AS $$
BEGIN
	RETURN QUERY
		SELECT s.queue, s.depth, s.in_flight, s.done, s.dead,
			   (SELECT pg_catalog.count(*) FROM pacelc.message_errors e
				  JOIN pacelc.messages m ON m.id OPERATOR(pg_catalog.=) e.message_id
				 WHERE m.queue OPERATOR(pg_catalog.=) s.queue),
			   s.oldest_age, s.attempts
		  FROM pacelc.queue_status s
		  JOIN pacelc.queues q ON q.name OPERATOR(pg_catalog.=) s.queue
		 WHERE pacelc_private.sees_queue(caller, q)
		 ORDER BY s.queue;
END
$$;

/* ---- the entry points ---- */

/* Written in PL/pgSQL above, reached through pacelc_call_private. */
/* and a concurrency limit per queue (the worker pool, issue 12) */
DROP FUNCTION pacelc.create_queue(text, regprocedure, integer, interval);
DROP FUNCTION pacelc.alter_queue(text, regprocedure, integer, interval, boolean, regrole);
CREATE FUNCTION pacelc.create_queue(name text, handler regprocedure DEFAULT NULL,
									max_attempts integer DEFAULT 10,
									backoff interval DEFAULT '1s',
									concurrency integer DEFAULT NULL) RETURNS void
	LANGUAGE c AS 'MODULE_PATHNAME', 'pacelc_call_private';
COMMENT ON FUNCTION pacelc.create_queue(text, regprocedure, integer, interval, integer) IS
	'create a durable queue; with a handler, the background workers consume it as the calling role';
CREATE FUNCTION pacelc.alter_queue(name text, handler regprocedure DEFAULT NULL,
								   max_attempts integer DEFAULT NULL,
								   backoff interval DEFAULT NULL,
								   drop_handler boolean DEFAULT false,
								   new_owner regrole DEFAULT NULL,
								   concurrency integer DEFAULT NULL) RETURNS void
	LANGUAGE c AS 'MODULE_PATHNAME', 'pacelc_call_private';
COMMENT ON FUNCTION pacelc.alter_queue(text, regprocedure, integer, interval, boolean, regrole, integer) IS
	'change a queue''s handler, max_attempts, backoff, owner or concurrency (0: the default)';
CREATE OR REPLACE FUNCTION pacelc.drop_queue(name text) RETURNS void
	LANGUAGE c AS 'MODULE_PATHNAME', 'pacelc_call_private';
CREATE OR REPLACE FUNCTION pacelc.dequeue(queue text, batch integer DEFAULT 1,
										  lease interval DEFAULT '30s')
	RETURNS SETOF pacelc.messages
	LANGUAGE c AS 'MODULE_PATHNAME', 'pacelc_call_private';
CREATE OR REPLACE FUNCTION pacelc.ack(id bigint) RETURNS void
	LANGUAGE c AS 'MODULE_PATHNAME', 'pacelc_call_private';
CREATE OR REPLACE FUNCTION pacelc.nack(id bigint, error text, retry_in interval DEFAULT NULL) RETURNS void
	LANGUAGE c AS 'MODULE_PATHNAME', 'pacelc_call_private';
CREATE OR REPLACE FUNCTION pacelc.retry(id bigint) RETURNS void
	LANGUAGE c AS 'MODULE_PATHNAME', 'pacelc_call_private';
CREATE OR REPLACE FUNCTION pacelc.purge_done(older_than interval DEFAULT '1 day') RETURNS bigint
	LANGUAGE c AS 'MODULE_PATHNAME', 'pacelc_call_private';
CREATE OR REPLACE FUNCTION pacelc.stats(OUT queue text, OUT depth bigint, OUT in_flight bigint,
										OUT done bigint, OUT dead bigint, OUT failed_attempts bigint,
										OUT oldest_age interval, OUT attempts bigint)
	RETURNS SETOF record
	LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'pacelc_call_private';
CREATE FUNCTION pacelc.grant_queue(queue text, privilege text, grantee regrole) RETURNS void
	LANGUAGE c AS 'MODULE_PATHNAME', 'pacelc_call_private';
COMMENT ON FUNCTION pacelc.grant_queue(text, text, regrole) IS
	'let a role produce into (''produce''), consume from (''consume'') or both (''all'') a queue one owns';
CREATE FUNCTION pacelc.revoke_queue(queue text, privilege text, grantee regrole) RETURNS void
	LANGUAGE c AS 'MODULE_PATHNAME', 'pacelc_call_private';
COMMENT ON FUNCTION pacelc.revoke_queue(text, text, regrole) IS
	'take back what grant_queue() gave';

/* Written in C: SECURITY INVOKER, they act as the owner themselves. */
ALTER FUNCTION pacelc.set_stock(text, bigint) SECURITY INVOKER;
ALTER FUNCTION pacelc.add_stock(text, bigint) SECURITY INVOKER;
ALTER FUNCTION pacelc.reserve(text, bigint, interval, text, jsonb) SECURITY INVOKER;
ALTER FUNCTION pacelc.try_reserve(text, bigint, interval, text, jsonb) SECURITY INVOKER;
ALTER FUNCTION pacelc.reserve_all(text[], bigint[], interval, text, jsonb) SECURITY INVOKER;
ALTER FUNCTION pacelc.confirm(bigint) SECURITY INVOKER;
ALTER FUNCTION pacelc.release(bigint) SECURITY INVOKER;
ALTER FUNCTION pacelc.available(text) SECURITY INVOKER;
ALTER FUNCTION pacelc.expire_holds(integer) SECURITY INVOKER;
ALTER FUNCTION pacelc.enqueue(text, jsonb, interval, text) SECURITY INVOKER;

/* Replaced by current_user at the call site and pacelc_private. */
DROP FUNCTION pacelc._outer_user();
DROP FUNCTION pacelc._check_queue_args(text, regprocedure, integer, interval, regrole);
DROP FUNCTION pacelc._message_for_update(bigint);

/* ---- views: what a role may see (security barriers: no leaky quals) ---- */

CREATE VIEW pacelc.queue_status WITH (security_barrier) AS
	SELECT q.name AS queue, q.handler, q.owner,
		   q.max_attempts, q.backoff,
		   count(m.id) FILTER (WHERE m.state = 'ready' AND coalesce(m.leased_until, '-infinity') <= now() AND m.run_at <= now()) AS due,
		   count(m.id) FILTER (WHERE m.state = 'ready' AND m.leased_until IS NULL AND m.run_at > now()) AS scheduled,
		   count(m.id) FILTER (WHERE m.state = 'ready' AND m.leased_until > now()) AS in_flight,
		   count(m.id) FILTER (WHERE m.state = 'ready') AS depth,
		   count(m.id) FILTER (WHERE m.state = 'done') AS done,
		   count(m.id) FILTER (WHERE m.state = 'dead') AS dead,
		   now() - min(m.enqueued_at) FILTER (WHERE m.state = 'ready') AS oldest_age,
		   coalesce(sum(m.attempts), 0) AS attempts
	  FROM pacelc.queues q
	  LEFT JOIN pacelc.messages m ON m.queue = q.name
	 WHERE pg_catalog.pg_has_role(CURRENT_USER, q.owner::pg_catalog.oid, 'USAGE')
		OR pg_catalog.pg_has_role(CURRENT_USER, 'pacelc_monitor', 'USAGE')
		OR EXISTS (SELECT FROM pacelc.queue_grants g
					WHERE g.queue = q.name
					  AND pg_catalog.pg_has_role(CURRENT_USER, g.grantee::pg_catalog.oid, 'USAGE'))
	 GROUP BY q.name, q.handler, q.owner, q.max_attempts, q.backoff;
COMMENT ON VIEW pacelc.queue_status IS
	'per queue one owns, is granted, or (pacelc_monitor) any: waiting, in flight, done, dead, oldest age, attempts';

/* Payloads: only for the queue's owner, its consumers and pacelc_admin. */
CREATE OR REPLACE VIEW pacelc.dead_letters WITH (security_barrier) AS
	SELECT m.id, m.queue, m.payload, m.attempts, m.last_error, m.last_sqlstate,
		   m.last_error_at, m.enqueued_at
	  FROM pacelc.messages m
	  JOIN pacelc.queues q ON q.name = m.queue
	 WHERE m.state = 'dead'
	   AND (pg_catalog.pg_has_role(CURRENT_USER, q.owner::pg_catalog.oid, 'USAGE')
			OR pg_catalog.pg_has_role(CURRENT_USER, 'pacelc_admin', 'USAGE')
			OR EXISTS (SELECT FROM pacelc.queue_grants g
						WHERE g.queue = q.name AND g.consume
						  AND pg_catalog.pg_has_role(CURRENT_USER, g.grantee::pg_catalog.oid, 'USAGE')));

/* One's own reservations; every reservation for pacelc_monitor. */
CREATE OR REPLACE VIEW pacelc.reservations WITH (security_barrier) AS
	SELECT r.id, r.sku, r.qty, r.state, r.created_at, r.expires_at, r.idempotency_key, r.owner
	  FROM pacelc.reservation_data r
	 WHERE pg_catalog.pg_has_role(CURRENT_USER, 'pacelc_monitor', 'USAGE')
		OR (r.owner IS NOT NULL
			AND pg_catalog.pg_has_role(CURRENT_USER, r.owner::pg_catalog.oid, 'USAGE'));



/* -------------------------- end of section A -------------------------- */




/* ======================================================================
 * Section B: long-lived clusters (issue 13)
 * ====================================================================== */

/*
 * verify()'s escrow audit, done in C: counter and tables are read so that a
 * race with a committing release or reserve can never look like an excess
 * (see pacelc_escrow_excess in src/stock.c).  Internal: verify() calls it.
 */
CREATE FUNCTION pacelc._escrow_excess(OUT sku pg_catalog.text,
									  OUT escrow pg_catalog.int8,
									  OUT tables pg_catalog.int8)
	RETURNS SETOF record
	LANGUAGE c VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pacelc, pg_temp
	AS 'MODULE_PATHNAME', 'pacelc_escrow_excess';
REVOKE ALL ON FUNCTION pacelc._escrow_excess() FROM PUBLIC;

/* verify(): no false escrow_exceeds_tables alarms under load (issue 13). */
CREATE OR REPLACE FUNCTION pacelc.verify(OUT problem pg_catalog.text,
										 OUT sku pg_catalog.text,
										 OUT detail pg_catalog.text)
	RETURNS SETOF record
	LANGUAGE sql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pacelc, pg_temp
	BEGIN ATOMIC
	SELECT pacelc._assert_loaded();
	SELECT p.problem, p.sku, p.detail FROM (
		SELECT 'negative_on_hand'::pg_catalog.text AS problem, s.sku,
			   pg_catalog.format('on_hand is %s', s.on_hand) AS detail
		  FROM pacelc.stock s WHERE s.on_hand < 0
		UNION ALL
		SELECT 'held_exceeds_on_hand', s.sku,
			   pg_catalog.format('held %s > on_hand %s', s.held, s.on_hand)
		  FROM pacelc.stock s WHERE s.held > s.on_hand
		UNION ALL
		SELECT 'unknown_sku', r.sku,
			   pg_catalog.format('%s reservations for a SKU that does not exist',
								 pg_catalog.count(*))
		  FROM pacelc.reservation_data r
		 WHERE NOT EXISTS (SELECT 1 FROM pacelc.skus k WHERE k.sku = r.sku)
		 GROUP BY r.sku
		UNION ALL
		SELECT 'escrow_exceeds_tables', e.sku,
			   pg_catalog.format('shared memory allows %s, tables allow %s',
								 e.escrow, e.tables)
		  FROM pacelc._escrow_excess() e
		UNION ALL
		SELECT 'dangling_idempotency_key', NULL,
			   pg_catalog.format('a key of role %s names reservations that do not exist',
								 coalesce(i.owner::pg_catalog.text, '(none)'))
		  FROM pacelc.idempotency_keys i
		 WHERE (SELECT pg_catalog.count(*) FROM pacelc.reservation_data r
				 WHERE r.id = ANY (i.ids)) <> pg_catalog.cardinality(i.ids)
	) p ORDER BY 1, 2;
	END;

/*
 * fold_confirmed(): SKUs in a fixed order (ORDER BY sku), and never waits
 * for a SKU row lock: a SKU locked by someone else's open transaction (a
 * restock, another fold) is skipped and folded in a later round.  So two
 * folds cannot deadlock, and an idle transaction cannot stall the worker.
 */
CREATE OR REPLACE FUNCTION pacelc.fold_confirmed(batch pg_catalog.int4 DEFAULT 1000)
	RETURNS pg_catalog.int8
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pacelc, pg_temp
	AS $$
DECLARE
	s		pg_catalog.text;
	n		pg_catalog.int8 := 0;
	folded	pg_catalog.int8;
BEGIN
	PERFORM pacelc._assert_loaded();
	IF batch IS NULL THEN
		RAISE EXCEPTION 'batch must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF batch < 1 THEN
		RAISE EXCEPTION 'batch must be positive' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF pg_catalog.current_setting('transaction_read_only')::pg_catalog.bool THEN
		RAISE EXCEPTION 'cannot execute fold_confirmed() in a read-only transaction'
			USING ERRCODE = 'read_only_sql_transaction';
	END IF;
	FOR s IN SELECT k.sku FROM pacelc.skus k
			  WHERE k.sku IN (SELECT r.sku FROM pacelc.reservation_data r
							   WHERE r.state = 'confirmed' AND NOT r.folded)
			  ORDER BY k.sku
			  LIMIT batch
			  FOR UPDATE OF k SKIP LOCKED
	LOOP
		WITH f AS (
			UPDATE pacelc.reservation_data r SET folded = true
			 WHERE r.sku = s AND r.state = 'confirmed' AND NOT r.folded
			RETURNING r.qty)
		SELECT coalesce(pg_catalog.sum(f.qty), 0)::pg_catalog.int8
		  INTO folded FROM f;
		UPDATE pacelc.skus k SET on_hand_base = k.on_hand_base - folded
		 WHERE k.sku = s;
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;

/* -------------------------- end of section B -------------------------- */




/* ======================================================================
 * Section C: one worker, many tenants (issue 12)
 * ====================================================================== */

/*
 * A queue's own limit of workers that handle its messages at once (NULL:
 * the setting pacelc.queue_concurrency, 1 by default, which keeps a
 * queue's first attempts in order).
 */
ALTER TABLE pacelc.queues ADD COLUMN concurrency integer
	CONSTRAINT queue_concurrency_valid CHECK (concurrency BETWEEN 1 AND 64);

/*
 * Records a failed attempt.  Retried after retry_in, or after the queue's
 * backoff doubled per attempt (the exponent capped, so attempt 1,025 or
 * 2,000,000 computes as well as attempt 2) with +-50% jitter, at most 10^6
 * times the backoff and at most 100 years; dead after max_attempts.
 */
CREATE OR REPLACE FUNCTION pacelc._fail(m pacelc.messages, error pg_catalog.text,
										sqlstate pg_catalog.text, retry_in pg_catalog.interval,
										counted_attempts pg_catalog.int4)
	RETURNS pg_catalog.text
	LANGUAGE plpgsql SET search_path = pg_catalog, pacelc, pg_temp
	AS $$
DECLARE
	q		pacelc.queues;
	secs	pg_catalog.float8;
	delay	pg_catalog.interval;
	new_state pg_catalog.text;
BEGIN
	SELECT * INTO q FROM pacelc.queues WHERE name OPERATOR(pg_catalog.=) m.queue;
	IF retry_in IS NOT NULL THEN
		delay := least(retry_in, '100 years'::pg_catalog.interval);
	ELSE
		secs := pg_catalog.date_part('epoch', coalesce(q.backoff, '1 s'::pg_catalog.interval))
			* pg_catalog.power(2::pg_catalog.float8,
							   least(greatest(counted_attempts - 1, 0), 20))
			* (0.5 + pg_catalog.random());
		delay := pg_catalog.make_interval(secs => least(secs, 3.15e9::pg_catalog.float8));
	END IF;
	new_state := CASE WHEN counted_attempts >= coalesce(q.max_attempts, 1) THEN 'dead' ELSE 'ready' END;
	UPDATE pacelc.messages
	   SET state = new_state, attempts = counted_attempts,
		   run_at = pg_catalog.clock_timestamp() + delay, leased_until = NULL,
		   last_error = _fail.error, last_sqlstate = _fail.sqlstate,
		   last_error_at = pg_catalog.clock_timestamp()
	 WHERE id OPERATOR(pg_catalog.=) m.id;
	INSERT INTO pacelc.message_errors (message_id, attempt, error, sqlstate)
	VALUES (m.id, counted_attempts, coalesce(error, ''), sqlstate)
	ON CONFLICT (message_id, attempt) DO UPDATE SET error = excluded.error,
		sqlstate = excluded.sqlstate, failed_at = excluded.failed_at;
	RETURN new_state;
END
$$;




/* -------------------------- end of section C -------------------------- */




/* ======================================================================
 * Section D: read-your-writes (issue 11)
 * ====================================================================== */




/* -------------------------- end of section D -------------------------- */




/* ======================================================================
 * Section Z: every function pins its search_path; the shipped roles'
 * rights.  Last, so that it covers the functions of every section.
 * ====================================================================== */

DO $pin$
DECLARE
	f	pg_catalog.regprocedure;
BEGIN
	FOR f IN SELECT p.oid FROM pg_catalog.pg_proc p
			  WHERE p.pronamespace OPERATOR(pg_catalog.=) ANY
					(ARRAY['pacelc'::pg_catalog.regnamespace, 'pacelc_private'::pg_catalog.regnamespace])
	LOOP
		EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog, pacelc, pg_temp', f);
	END LOOP;
END
$pin$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pacelc FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pacelc_private FROM PUBLIC;

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
