/* pacelc 0.1 -> 0.2 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION pacelc UPDATE TO '0.2'" to load this file. \quit

/*
 * enqueue() in C (src/queue.c): the queue's hot path, one saved plan
 * instead of PL/pgSQL.  Same signature, defaults, errors and privileges.
 */
CREATE OR REPLACE FUNCTION pacelc.enqueue(queue text, payload jsonb, delay interval DEFAULT '0',
										  idempotency_key text DEFAULT NULL) RETURNS bigint
	LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pacelc
	AS 'MODULE_PATHNAME', 'pacelc_enqueue';

/*
 * drop_queue() waits until no transaction is inserting into the messages
 * table before it deletes, so that an enqueue that found the queue just
 * before the drop cannot leave a message behind in a queue that no longer
 * exists (messages have no foreign key to their queue, on purpose: see the
 * install script).  It asks for the lock with NOWAIT, again and again, so
 * that while it waits it does not queue every other enqueue behind itself;
 * after lock_timeout (or 10 s) it gives up with 55P03.
 */
CREATE OR REPLACE FUNCTION pacelc.drop_queue(name text) RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pacelc
	AS $$
DECLARE
	caller regrole := pacelc._outer_user()::regrole;
	q	pacelc.queues;
	deadline timestamptz := clock_timestamp() +
		CASE WHEN current_setting('lock_timeout') IN ('0', '0ms') THEN interval '10 s'
			 ELSE current_setting('lock_timeout')::interval END;
BEGIN
	PERFORM pacelc._assert_loaded();
	IF name IS NULL THEN
		RAISE EXCEPTION 'queue name must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF name = 'expired' THEN
		RAISE EXCEPTION 'cannot drop the built-in queue "expired"' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT * INTO q FROM pacelc.queues WHERE queues.name = drop_queue.name FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'queue % does not exist', quote_literal(name) USING ERRCODE = 'undefined_object';
	END IF;
	IF q.owner <> caller AND NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE oid = caller) THEN
		RAISE EXCEPTION 'must be the owner of queue %', quote_literal(name) USING ERRCODE = 'insufficient_privilege';
	END IF;
	LOOP
		BEGIN
			LOCK TABLE pacelc.messages IN SHARE ROW EXCLUSIVE MODE NOWAIT;
			EXIT;
		EXCEPTION WHEN lock_not_available THEN
			IF clock_timestamp() > deadline THEN
				RAISE EXCEPTION 'could not drop queue %: messages are being written', quote_literal(name)
					USING ERRCODE = 'lock_not_available',
						  HINT = 'Retry when the queue is quieter, or raise lock_timeout.';
			END IF;
			PERFORM pg_catalog.pg_sleep(0.01);
		END;
	END LOOP;
	DELETE FROM pacelc.message_errors e USING pacelc.messages m
	 WHERE m.queue = q.name AND e.message_id = m.id;
	DELETE FROM pacelc.messages m WHERE m.queue = q.name;
	DELETE FROM pacelc.queues WHERE queues.name = q.name;
END
$$;

/*
 * create_queue: an enqueue in REPEATABLE READ that raced a drop_queue() can
 * still have inserted into the dropped queue (its snapshot saw the queue);
 * a queue created again under that name starts without such leftovers.
 */
CREATE OR REPLACE FUNCTION pacelc.create_queue(name text, handler regprocedure DEFAULT NULL,
											   max_attempts integer DEFAULT 10,
											   backoff interval DEFAULT '1s') RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pacelc
	AS $$
DECLARE
	caller regrole := pacelc._outer_user()::regrole;
BEGIN
	PERFORM pacelc._check_queue_args(name, handler, max_attempts, backoff, caller);
	INSERT INTO pacelc.queues (name, handler, owner, max_attempts, backoff)
	VALUES (name, handler, caller, max_attempts, backoff);
	DELETE FROM pacelc.message_errors e USING pacelc.messages m
	 WHERE m.queue = create_queue.name AND e.message_id = m.id;
	DELETE FROM pacelc.messages m WHERE m.queue = create_queue.name;
	PERFORM pacelc._wake_worker_at_commit();
EXCEPTION WHEN unique_violation THEN
	RAISE EXCEPTION 'queue % already exists', quote_literal(name)
		USING ERRCODE = 'duplicate_object',
			  HINT = 'Use pacelc.alter_queue() to change it.';
END
$$;

/*
 * Queue settings: a NULL max_attempts or backoff is 22004 like every other
 * NULL (it was 22023 in 0.1).
 */
CREATE OR REPLACE FUNCTION pacelc._check_queue_args(name text, handler regprocedure,
													max_attempts integer, backoff interval,
													owner regrole) RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog, pacelc
	AS $$
DECLARE
	p	record;
BEGIN
	PERFORM pacelc._assert_loaded();
	IF name IS NULL OR max_attempts IS NULL OR backoff IS NULL THEN
		RAISE EXCEPTION '% must not be null',
			CASE WHEN name IS NULL THEN 'queue name' WHEN max_attempts IS NULL THEN 'max_attempts'
				 ELSE 'backoff' END
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF name !~ '^[A-Za-z_][A-Za-z0-9_.-]{0,55}$' THEN
		RAISE EXCEPTION 'invalid queue name %', quote_literal(name)
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A queue name starts with a letter or underscore and has at most 56 letters, digits, underscores, dots or dashes.';
	END IF;
	IF max_attempts < 1 THEN
		RAISE EXCEPTION 'max_attempts must be at least 1' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF backoff < interval '0' THEN
		RAISE EXCEPTION 'backoff must not be negative' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF handler IS NOT NULL THEN
		SELECT prokind, pronargs, proargtypes[0] AS argtype INTO p
		  FROM pg_catalog.pg_proc WHERE oid = handler;
		IF p.prokind <> 'f' OR p.pronargs <> 1 OR p.argtype <> 'jsonb'::regtype THEN
			RAISE EXCEPTION 'function % cannot be a queue handler', handler
				USING ERRCODE = 'undefined_function',
					  DETAIL = 'A handler is a function taking exactly one argument of type jsonb.';
		END IF;
		IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE oid = owner) THEN
			RAISE EXCEPTION 'a queue handler must not run as a superuser'
				USING ERRCODE = 'insufficient_privilege',
					  DETAIL = 'Handlers run as the role that installs them.',
					  HINT = 'Install the handler as an ordinary role, e.g. after SET ROLE.';
		END IF;
		IF NOT pg_catalog.has_function_privilege(owner, handler, 'EXECUTE') THEN
			RAISE EXCEPTION 'role % may not execute %', owner::regrole, handler
				USING ERRCODE = 'insufficient_privilege';
		END IF;
	END IF;
END
$$;

/*
 * alter_queue: new_owner must be a role the caller is a member of (or the
 * caller a superuser).  In 0.1 any owner could hand a queue, and so its
 * handler's execution, to any non-superuser role.  A NULL name is 22004.
 */
CREATE OR REPLACE FUNCTION pacelc.alter_queue(name text, handler regprocedure DEFAULT NULL,
											  max_attempts integer DEFAULT NULL,
											  backoff interval DEFAULT NULL,
											  drop_handler boolean DEFAULT false,
											  new_owner regrole DEFAULT NULL) RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pacelc
	AS $$
DECLARE
	caller regrole := pacelc._outer_user()::regrole;
	caller_super boolean := (SELECT rolsuper FROM pg_catalog.pg_roles WHERE oid = caller);
	q	pacelc.queues;
BEGIN
	PERFORM pacelc._assert_loaded();
	IF name IS NULL OR drop_handler IS NULL THEN
		RAISE EXCEPTION '% must not be null', CASE WHEN name IS NULL THEN 'queue name' ELSE 'drop_handler' END
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT * INTO q FROM pacelc.queues WHERE queues.name = alter_queue.name FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'queue % does not exist', quote_literal(name) USING ERRCODE = 'undefined_object';
	END IF;
	IF q.owner <> caller AND NOT caller_super THEN
		RAISE EXCEPTION 'must be the owner of queue %', quote_literal(name) USING ERRCODE = 'insufficient_privilege';
	END IF;
	IF new_owner IS NOT NULL AND NOT caller_super
	   AND NOT pg_catalog.pg_has_role(caller, new_owner, 'MEMBER') THEN
		RAISE EXCEPTION 'must be a member of role % to hand queue % over to it', new_owner, quote_literal(name)
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'The handler of a queue runs as the queue''s owner.';
	END IF;
	q.max_attempts := coalesce(max_attempts, q.max_attempts);
	q.backoff := coalesce(backoff, q.backoff);
	IF drop_handler THEN
		q.handler := NULL;
	ELSIF handler IS NOT NULL THEN
		q.handler := handler;
		q.owner := caller;
	END IF;
	IF new_owner IS NOT NULL THEN
		q.owner := new_owner;
	END IF;
	PERFORM pacelc._check_queue_args(q.name, q.handler, q.max_attempts, q.backoff, q.owner);
	UPDATE pacelc.queues SET handler = q.handler, owner = q.owner,
		   max_attempts = q.max_attempts, backoff = q.backoff
	 WHERE queues.name = q.name;
	PERFORM pacelc._wake_worker_at_commit();
END
$$;

/* fold_confirmed: 22004 for NULL, 25006 on a standby even with nothing to fold. */
CREATE OR REPLACE FUNCTION pacelc.fold_confirmed(batch integer DEFAULT 1000) RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pacelc
	AS $$
DECLARE
	s		text;
	n		bigint := 0;
	folded	bigint;
BEGIN
	PERFORM pacelc._assert_loaded();
	IF batch IS NULL THEN
		RAISE EXCEPTION 'batch must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF batch < 1 THEN
		RAISE EXCEPTION 'batch must be positive' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF pg_catalog.current_setting('transaction_read_only')::boolean THEN
		RAISE EXCEPTION 'cannot execute fold_confirmed() in a read-only transaction'
			USING ERRCODE = 'read_only_sql_transaction';
	END IF;
	FOR s IN SELECT DISTINCT r.sku FROM pacelc.reservation_data r
			  WHERE r.state = 'confirmed' AND NOT r.folded LIMIT batch
	LOOP
		PERFORM 1 FROM pacelc.skus k WHERE k.sku = s FOR UPDATE;
		WITH f AS (
			UPDATE pacelc.reservation_data r SET folded = true
			 WHERE r.sku = s AND r.state = 'confirmed' AND NOT r.folded
			RETURNING r.qty)
		SELECT coalesce(sum(qty), 0) INTO folded FROM f;
		UPDATE pacelc.skus k SET on_hand_base = k.on_hand_base - folded WHERE k.sku = s;
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;

/* purge_done and stats: the preload guard (55000), and 22004 for NULL. */
CREATE OR REPLACE FUNCTION pacelc.purge_done(older_than interval DEFAULT '1 day') RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pacelc
	AS $$
DECLARE
	n	bigint;
BEGIN
	PERFORM pacelc._assert_loaded();
	IF older_than IS NULL THEN
		RAISE EXCEPTION 'older_than must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	WITH d AS (DELETE FROM pacelc.messages
				WHERE state = 'done' AND done_at < now() - older_than
			   RETURNING id),
		 e AS (DELETE FROM pacelc.message_errors WHERE message_id IN (SELECT id FROM d))
	SELECT count(*) INTO n FROM d;
	RETURN n;
END
$$;

CREATE OR REPLACE FUNCTION pacelc.stats(OUT queue text, OUT depth bigint, OUT in_flight bigint,
										OUT done bigint, OUT dead bigint, OUT failed_attempts bigint,
										OUT oldest_age interval, OUT attempts bigint)
	RETURNS SETOF record
	LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pacelc
	AS $$
BEGIN
	PERFORM pacelc._assert_loaded();
	RETURN QUERY
		SELECT s.queue, s.depth, s.in_flight, s.done, s.dead,
			   (SELECT count(*) FROM pacelc.message_errors e
				  JOIN pacelc.messages m ON m.id = e.message_id
				 WHERE m.queue = s.queue),
			   s.oldest_age, s.attempts
		  FROM pacelc.queue_status s ORDER BY s.queue;
END
$$;

/* Every function pins its search_path, the C ones included. */
ALTER FUNCTION pacelc._assert_loaded() SET search_path = pg_catalog, pacelc;
ALTER FUNCTION pacelc.commit_lsn() SET search_path = pg_catalog, pacelc;
ALTER FUNCTION pacelc.replay_lsn() SET search_path = pg_catalog, pacelc;
ALTER FUNCTION pacelc.wait_for_lsn(pg_lsn, interval) SET search_path = pg_catalog, pacelc;
ALTER FUNCTION pacelc._replica_status() SET search_path = pg_catalog, pacelc;
ALTER FUNCTION pacelc._outer_user() SET search_path = pg_catalog, pacelc;
ALTER FUNCTION pacelc._wake_worker_at_commit() SET search_path = pg_catalog, pacelc;
ALTER FUNCTION pacelc._wake_launcher() SET search_path = pg_catalog, pacelc;

/* The worker plans its rounds with its own query now (src/worker.c). */
DROP FUNCTION pacelc._worker_next_wakeup();

/*
 * dequeue: a message whose lease ran out max_attempts times (its consumer
 * died on it each time, without ack or nack) becomes a dead letter instead
 * of being leased forever.  Same signature and result as in 0.1.
 */
CREATE OR REPLACE FUNCTION pacelc.dequeue(queue text, batch integer DEFAULT 1,
										  lease interval DEFAULT '30s')
	RETURNS SETOF pacelc.messages
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pacelc
	AS $$
DECLARE
	q	pacelc.queues;
BEGIN
	PERFORM pacelc._assert_loaded();
	IF queue IS NULL OR batch IS NULL OR lease IS NULL THEN
		RAISE EXCEPTION 'queue, batch and lease must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF batch < 1 OR lease <= interval '0' THEN
		RAISE EXCEPTION 'batch and lease must be positive' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT * INTO q FROM pacelc.queues WHERE queues.name = dequeue.queue;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'queue % does not exist', quote_literal(queue) USING ERRCODE = 'undefined_object';
	END IF;
	WITH exhausted AS (
		SELECT m.id, m.attempts FROM pacelc.messages m
		 WHERE m.queue = dequeue.queue AND m.state = 'ready'
		   AND m.run_at <= clock_timestamp()
		   AND m.leased_until IS NOT NULL AND m.attempts >= q.max_attempts
		   FOR UPDATE SKIP LOCKED),
	dead AS (
		UPDATE pacelc.messages m
		   SET state = 'dead', leased_until = NULL,
			   last_error = 'lease expired without ack or nack', last_sqlstate = NULL,
			   last_error_at = clock_timestamp()
		  FROM exhausted e WHERE m.id = e.id
		RETURNING m.id, m.attempts)
	INSERT INTO pacelc.message_errors (message_id, attempt, error)
	SELECT d.id, d.attempts, 'lease expired without ack or nack' FROM dead d
	ON CONFLICT (message_id, attempt) DO NOTHING;
	RETURN QUERY
	WITH c AS (
		SELECT m.id FROM pacelc.messages m
		 WHERE m.queue = dequeue.queue AND m.state = 'ready'
		   AND m.run_at <= clock_timestamp()
		 ORDER BY m.run_at, m.id
		 LIMIT batch
		   FOR UPDATE SKIP LOCKED)
	UPDATE pacelc.messages m
	   SET attempts = m.attempts + 1,
		   leased_until = clock_timestamp() + lease,
		   run_at = clock_timestamp() + lease
	  FROM c WHERE m.id = c.id
	RETURNING m.*;
END
$$;
