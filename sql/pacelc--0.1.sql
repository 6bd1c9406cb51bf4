/* pacelc--0.1.sql: install script of pacelc 0.1 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION pacelc" to load this file. \quit

/*
 * Every object lives in schema pacelc (created by CREATE EXTENSION from the
 * control file).  Tables are private to the extension: applications change
 * them only through the functions below, which are SECURITY DEFINER with a
 * pinned search_path.  Nothing is granted to PUBLIC; see the README section
 * "Privileges" for the grants an application role needs.
 */
REVOKE ALL ON SCHEMA pacelc FROM PUBLIC;

CREATE FUNCTION pacelc._assert_loaded() RETURNS void
	LANGUAGE c STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'pacelc_assert_loaded';


/* ======================================================================
 * Section 1: stock reservation (escrow).  src/stock.c
 * ====================================================================== */


/*
 * The tables are the truth; shared memory only caches, per SKU, how many
 * units may still be promised (the escrow counter) and is rebuilt from here.
 *
 * skus.on_hand_base is the physical count plus the confirmed units that have
 * not yet been folded into it: confirm() then touches only its reservation
 * row, never the (hot) SKU row, and fold_confirmed() moves confirmed units
 * into on_hand_base in batches.  on_hand = on_hand_base - unfolded confirmed.
 */
CREATE TABLE pacelc.skus (
	sku			text PRIMARY KEY
		CONSTRAINT skus_sku_length CHECK (octet_length(sku) BETWEEN 1 AND 63),
	on_hand_base bigint NOT NULL,
	updated_at	timestamptz NOT NULL DEFAULT now()
);

CREATE SEQUENCE pacelc.reservation_id_seq;

CREATE TABLE pacelc.reservation_data (
	id			bigint PRIMARY KEY DEFAULT nextval('pacelc.reservation_id_seq'),
	sku			text NOT NULL,
	qty			bigint NOT NULL CONSTRAINT reservation_qty_positive CHECK (qty > 0),
	state		text NOT NULL DEFAULT 'held'
		CONSTRAINT reservation_state_valid
		CHECK (state IN ('held', 'confirmed', 'released', 'expired')),
	folded		boolean NOT NULL DEFAULT false,
	created_at	timestamptz NOT NULL DEFAULT now(),
	expires_at	timestamptz,
	ended_at	timestamptz,
	idempotency_key text,
	on_expire	jsonb,
	CONSTRAINT reservation_folded_only_confirmed CHECK (NOT folded OR state = 'confirmed')
);
ALTER SEQUENCE pacelc.reservation_id_seq OWNED BY pacelc.reservation_data.id;

/* What rebuilding a SKU's escrow counter and the stock view read. */
CREATE INDEX reservation_data_open_idx ON pacelc.reservation_data (sku, state)
	WHERE state = 'held' OR (state = 'confirmed' AND NOT folded);
/* What the worker's expiry scan reads. */
CREATE INDEX reservation_data_expiry_idx ON pacelc.reservation_data (expires_at)
	WHERE state = 'held' AND expires_at IS NOT NULL;

/* One row per idempotency key: the request it stood for and its answer. */
CREATE TABLE pacelc.idempotency_keys (
	key			text PRIMARY KEY
		CONSTRAINT idempotency_key_length CHECK (octet_length(key) BETWEEN 1 AND 255),
	skus		text[] NOT NULL,
	qtys		bigint[] NOT NULL,
	ids			bigint[] NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT now()
);

SELECT pg_catalog.pg_extension_config_dump('pacelc.skus', '');
SELECT pg_catalog.pg_extension_config_dump('pacelc.reservation_data', '');
SELECT pg_catalog.pg_extension_config_dump('pacelc.reservation_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pacelc.idempotency_keys', '');

CREATE FUNCTION pacelc.set_stock(sku text, on_hand bigint) RETURNS void
	LANGUAGE c SECURITY DEFINER SET search_path = pg_catalog, pacelc
	AS 'MODULE_PATHNAME', 'pacelc_set_stock';
COMMENT ON FUNCTION pacelc.set_stock(text, bigint) IS
	'create a SKU or set its physical count (on hand)';

CREATE FUNCTION pacelc.add_stock(sku text, delta bigint) RETURNS bigint
	LANGUAGE c SECURITY DEFINER SET search_path = pg_catalog, pacelc
	AS 'MODULE_PATHNAME', 'pacelc_add_stock';
COMMENT ON FUNCTION pacelc.add_stock(text, bigint) IS
	'restock (delta > 0) or write off (delta < 0); returns the new on-hand count';

CREATE FUNCTION pacelc.reserve(sku text, qty bigint DEFAULT 1,
							   ttl interval DEFAULT NULL,
							   idempotency_key text DEFAULT NULL,
							   on_expire jsonb DEFAULT NULL) RETURNS bigint
	LANGUAGE c SECURITY DEFINER SET search_path = pg_catalog, pacelc
	AS 'MODULE_PATHNAME', 'pacelc_reserve';
COMMENT ON FUNCTION pacelc.reserve(text, bigint, interval, text, jsonb) IS
	'hold units of a SKU; raises PC001 when not enough are available';

CREATE FUNCTION pacelc.try_reserve(sku text, qty bigint DEFAULT 1,
								   ttl interval DEFAULT NULL,
								   idempotency_key text DEFAULT NULL,
								   on_expire jsonb DEFAULT NULL) RETURNS bigint
	LANGUAGE c SECURITY DEFINER SET search_path = pg_catalog, pacelc
	AS 'MODULE_PATHNAME', 'pacelc_try_reserve';
COMMENT ON FUNCTION pacelc.try_reserve(text, bigint, interval, text, jsonb) IS
	'like reserve(), but returns NULL instead of raising PC001';

CREATE FUNCTION pacelc.reserve_all(skus text[], qtys bigint[],
								   ttl interval DEFAULT NULL,
								   idempotency_key text DEFAULT NULL,
								   on_expire jsonb DEFAULT NULL) RETURNS bigint[]
	LANGUAGE c SECURITY DEFINER SET search_path = pg_catalog, pacelc
	AS 'MODULE_PATHNAME', 'pacelc_reserve_all';
COMMENT ON FUNCTION pacelc.reserve_all(text[], bigint[], interval, text, jsonb) IS
	'hold units of several SKUs, all or nothing; returns the reservation ids in argument order';

CREATE FUNCTION pacelc.confirm(id bigint) RETURNS void
	LANGUAGE c SECURITY DEFINER SET search_path = pg_catalog, pacelc
	AS 'MODULE_PATHNAME', 'pacelc_confirm';
COMMENT ON FUNCTION pacelc.confirm(bigint) IS
	'the sale happened: the held units leave on hand';

CREATE FUNCTION pacelc.release(id bigint) RETURNS void
	LANGUAGE c SECURITY DEFINER SET search_path = pg_catalog, pacelc
	AS 'MODULE_PATHNAME', 'pacelc_release';
COMMENT ON FUNCTION pacelc.release(bigint) IS
	'give the held units back';

CREATE FUNCTION pacelc.available(sku text) RETURNS bigint
	LANGUAGE c SECURITY DEFINER SET search_path = pg_catalog, pacelc
	AS 'MODULE_PATHNAME', 'pacelc_available';
COMMENT ON FUNCTION pacelc.available(text) IS
	'units that can still be reserved: on hand minus held (and minus holds of transactions in progress)';

CREATE FUNCTION pacelc.expire_holds(batch integer DEFAULT 1000) RETURNS bigint
	LANGUAGE c SECURITY DEFINER SET search_path = pg_catalog, pacelc
	AS 'MODULE_PATHNAME', 'pacelc_expire_holds';
COMMENT ON FUNCTION pacelc.expire_holds(integer) IS
	'expire held reservations whose ttl has passed (the worker calls this)';

/* Escrow counter of a SKU as shared memory has it, NULL if not loaded. */
CREATE FUNCTION pacelc._escrow_available(sku text) RETURNS bigint
	LANGUAGE c STRICT SECURITY DEFINER SET search_path = pg_catalog, pacelc
	AS 'MODULE_PATHNAME', 'pacelc_escrow_available';

CREATE FUNCTION pacelc.next_expiry() RETURNS timestamptz
	LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pacelc
	BEGIN ATOMIC
		SELECT pacelc._assert_loaded();
		SELECT min(expires_at) FROM pacelc.reservation_data WHERE state = 'held';
	END;
COMMENT ON FUNCTION pacelc.next_expiry() IS
	'earliest expiry among held reservations (NULL if none)';

/*
 * Moves confirmed units into skus.on_hand_base, one SKU at a time, so that
 * confirm() never has to lock the SKU row.  on_hand does not change.
 */
CREATE FUNCTION pacelc.fold_confirmed(batch integer DEFAULT 1000) RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pacelc
	AS $$
DECLARE
	s		text;
	n		bigint := 0;
	folded	bigint;
BEGIN
	PERFORM pacelc._assert_loaded();
	IF batch IS NULL OR batch < 1 THEN
		RAISE EXCEPTION 'batch must be positive' USING ERRCODE = 'invalid_parameter_value';
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
COMMENT ON FUNCTION pacelc.fold_confirmed(integer) IS
	'housekeeping: fold confirmed units into the SKU rows; returns the number of SKUs folded';

CREATE VIEW pacelc.stock AS
	SELECT k.sku,
		   k.on_hand_base - coalesce(o.unfolded, 0) AS on_hand,
		   coalesce(o.held, 0) AS held,
		   greatest(k.on_hand_base - coalesce(o.unfolded, 0) - coalesce(o.held, 0), 0) AS available
	  FROM pacelc.skus k
	  LEFT JOIN LATERAL (
		SELECT sum(r.qty) FILTER (WHERE r.state = 'held')::bigint AS held,
			   sum(r.qty) FILTER (WHERE r.state = 'confirmed')::bigint AS unfolded
		  FROM pacelc.reservation_data r
		 WHERE r.sku = k.sku
		   AND (r.state = 'held' OR (r.state = 'confirmed' AND NOT r.folded))) o ON true;
COMMENT ON VIEW pacelc.stock IS 'committed stock per SKU';

CREATE VIEW pacelc.reservations AS
	SELECT id, sku, qty, state, created_at, expires_at, idempotency_key
	  FROM pacelc.reservation_data;
COMMENT ON VIEW pacelc.reservations IS 'every reservation and its state';

/*
 * Audits the invariants.  No rows means they hold.  The escrow check only
 * flags a counter that promises more than the tables allow: a lower counter
 * is normal while reserving transactions are in flight.
 */
CREATE FUNCTION pacelc.verify(OUT problem text, OUT sku text, OUT detail text)
	RETURNS SETOF record
	LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pacelc
	BEGIN ATOMIC
	SELECT pacelc._assert_loaded();
	SELECT p.problem, p.sku, p.detail FROM (
		SELECT 'negative_on_hand'::text AS problem, s.sku,
			   format('on_hand is %s', s.on_hand) AS detail
		  FROM pacelc.stock s WHERE s.on_hand < 0
		UNION ALL
		SELECT 'held_exceeds_on_hand', s.sku,
			   format('held %s > on_hand %s', s.held, s.on_hand)
		  FROM pacelc.stock s WHERE s.held > s.on_hand
		UNION ALL
		SELECT 'unknown_sku', r.sku,
			   format('%s reservations for a SKU that does not exist', count(*))
		  FROM pacelc.reservation_data r
		 WHERE NOT EXISTS (SELECT 1 FROM pacelc.skus k WHERE k.sku = r.sku)
		 GROUP BY r.sku
		UNION ALL
		SELECT 'escrow_exceeds_tables', s.sku,
			   format('shared memory allows %s, tables allow %s',
					  pacelc._escrow_available(s.sku), s.on_hand - s.held)
		  FROM pacelc.stock s
		 WHERE NOT pg_is_in_recovery()
		   AND pacelc._escrow_available(s.sku) > s.on_hand - s.held
		UNION ALL
		SELECT 'dangling_idempotency_key', NULL,
			   format('key %s names reservations that do not exist', i.key)
		  FROM pacelc.idempotency_keys i
		 WHERE (SELECT count(*) FROM pacelc.reservation_data r WHERE r.id = ANY (i.ids))
			   <> cardinality(i.ids)
	) p ORDER BY 1, 2;
	END;
COMMENT ON FUNCTION pacelc.verify() IS
	'audit the stock invariants; returns no rows when they hold';

/* ---------------------------- end of section 1 ---------------------------- */




/* ======================================================================
 * Section 2: session LSN tokens.  src/session_lsn.c
 * ====================================================================== */


CREATE FUNCTION pacelc.commit_lsn() RETURNS pg_lsn
	LANGUAGE c STABLE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'pacelc_commit_lsn';
COMMENT ON FUNCTION pacelc.commit_lsn() IS
	'end of this session''s last commit (NULL if none): the read-your-writes token';

CREATE FUNCTION pacelc.replay_lsn() RETURNS pg_lsn
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pacelc_replay_lsn';
COMMENT ON FUNCTION pacelc.replay_lsn() IS
	'what this node has applied: replay position on a standby, insert position on a primary';

CREATE FUNCTION pacelc.wait_for_lsn(target pg_lsn, timeout interval DEFAULT '5s') RETURNS pg_lsn
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pacelc_wait_for_lsn';
COMMENT ON FUNCTION pacelc.wait_for_lsn(pg_lsn, interval) IS
	'on a standby, wait until replay reaches target (PC010 on timeout); returns at once on a primary';

CREATE FUNCTION pacelc._replica_status(OUT role text, OUT replay_lsn pg_lsn,
									   OUT receive_lsn pg_lsn, OUT lag_bytes bigint,
									   OUT last_replayed_commit timestamptz,
									   OUT staleness_seconds float8,
									   OUT wal_receiver text, OUT waiters integer,
									   OUT waits bigint, OUT wait_timeouts bigint,
									   OUT avg_wait_ms float8, OUT max_wait_ms float8,
									   OUT total_wait_ms float8)
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pacelc_replica_status';

CREATE VIEW pacelc.replica_status AS SELECT * FROM pacelc._replica_status();
COMMENT ON VIEW pacelc.replica_status IS
	'this node: role, replay/receive LSN, lag in bytes and time, waiters and wait statistics';

/* ---------------------------- end of section 2 ---------------------------- */




/* ======================================================================
 * Section 3: compensation queue.  src/queue.c, src/worker.c
 * ====================================================================== */


/*
 * Queues and their messages.  A message is "ready" (waiting, due at run_at;
 * an external consumer's lease just moves run_at), "done" or "dead".
 * No foreign key from messages to queues: its KEY SHARE lock on the queue
 * row would make every enqueue of a busy queue fight over one row.
 */
CREATE TABLE pacelc.queues (
	name		text PRIMARY KEY
		CONSTRAINT queue_name_valid CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_.-]{0,55}$'),
	handler		regprocedure,
	owner		regrole NOT NULL,
	max_attempts integer NOT NULL CONSTRAINT queue_max_attempts CHECK (max_attempts >= 1),
	backoff		interval NOT NULL CONSTRAINT queue_backoff CHECK (backoff >= '0'),
	created_at	timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pacelc.messages (
	id			bigserial PRIMARY KEY,
	queue		text NOT NULL,
	payload		jsonb NOT NULL,
	state		text NOT NULL DEFAULT 'ready'
		CONSTRAINT message_state_valid CHECK (state IN ('ready', 'done', 'dead')),
	attempts	integer NOT NULL DEFAULT 0,
	run_at		timestamptz NOT NULL DEFAULT now(),
	leased_until timestamptz,
	idempotency_key text,
	enqueued_at timestamptz NOT NULL DEFAULT now(),
	done_at		timestamptz,
	last_error	text,
	last_sqlstate text,
	last_error_at timestamptz
);
/* partial: most messages have no key and cost no entry here */
CREATE UNIQUE INDEX message_idempotency ON pacelc.messages (queue, idempotency_key)
	WHERE idempotency_key IS NOT NULL;
CREATE INDEX messages_due_idx ON pacelc.messages (queue, run_at, id) WHERE state = 'ready';

/* Every failed attempt, for the people who must look. */
CREATE TABLE pacelc.message_errors (
	message_id	bigint NOT NULL,
	attempt		integer NOT NULL,
	error		text NOT NULL,
	sqlstate	text,
	failed_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (message_id, attempt)
);

SELECT pg_catalog.pg_extension_config_dump('pacelc.queues', 'WHERE name <> ''expired''');
SELECT pg_catalog.pg_extension_config_dump('pacelc.messages', '');
SELECT pg_catalog.pg_extension_config_dump('pacelc.messages_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pacelc.message_errors', '');

/* The role that called us, even from inside a SECURITY DEFINER function. */
CREATE FUNCTION pacelc._outer_user() RETURNS oid
	LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'pacelc_outer_user';

/* Sets this database's worker's latch when the transaction commits. */
CREATE FUNCTION pacelc._wake_worker_at_commit() RETURNS void
	LANGUAGE c AS 'MODULE_PATHNAME', 'pacelc_wake_worker_at_commit';

/* Asks the launcher to look for databases to serve now. */
CREATE FUNCTION pacelc._wake_launcher() RETURNS void
	LANGUAGE c AS 'MODULE_PATHNAME', 'pacelc_wake_launcher';

/*
 * Checks a queue's settings.  A handler takes one jsonb argument and runs
 * as the role that installs it, which must not be a superuser and must be
 * allowed to execute it.
 */
CREATE FUNCTION pacelc._check_queue_args(name text, handler regprocedure,
										 max_attempts integer, backoff interval,
										 owner regrole) RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog, pacelc
	AS $$
DECLARE
	p	record;
BEGIN
	PERFORM pacelc._assert_loaded();
	IF name IS NULL THEN
		RAISE EXCEPTION 'queue name must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF name !~ '^[A-Za-z_][A-Za-z0-9_.-]{0,55}$' THEN
		RAISE EXCEPTION 'invalid queue name %', quote_literal(name)
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A queue name starts with a letter or underscore and has at most 56 letters, digits, underscores, dots or dashes.';
	END IF;
	IF max_attempts IS NULL OR max_attempts < 1 THEN
		RAISE EXCEPTION 'max_attempts must be at least 1' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF backoff IS NULL OR backoff < interval '0' THEN
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

CREATE FUNCTION pacelc.create_queue(name text, handler regprocedure DEFAULT NULL,
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
	PERFORM pacelc._wake_worker_at_commit();
EXCEPTION WHEN unique_violation THEN
	RAISE EXCEPTION 'queue % already exists', quote_literal(name)
		USING ERRCODE = 'duplicate_object',
			  HINT = 'Use pacelc.alter_queue() to change it.';
END
$$;
COMMENT ON FUNCTION pacelc.create_queue(text, regprocedure, integer, interval) IS
	'create a durable queue; with a handler, the background worker consumes it as the calling role';

/*
 * Changes a queue.  Only its owner (or a superuser) may.  Installing a
 * handler makes the caller the owner, since the handler will run as that
 * role; new_owner hands a queue over (how the built-in queue "expired",
 * owned by the role that created the extension, gets a handler).
 */
CREATE FUNCTION pacelc.alter_queue(name text, handler regprocedure DEFAULT NULL,
								   max_attempts integer DEFAULT NULL,
								   backoff interval DEFAULT NULL,
								   drop_handler boolean DEFAULT false,
								   new_owner regrole DEFAULT NULL) RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pacelc
	AS $$
DECLARE
	caller regrole := pacelc._outer_user()::regrole;
	q	pacelc.queues;
BEGIN
	PERFORM pacelc._assert_loaded();
	SELECT * INTO q FROM pacelc.queues WHERE queues.name = alter_queue.name FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'queue % does not exist', quote_literal(name) USING ERRCODE = 'undefined_object';
	END IF;
	IF q.owner <> caller AND NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE oid = caller) THEN
		RAISE EXCEPTION 'must be the owner of queue %', quote_literal(name) USING ERRCODE = 'insufficient_privilege';
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
COMMENT ON FUNCTION pacelc.alter_queue(text, regprocedure, integer, interval, boolean, regrole) IS
	'change a queue''s handler, max_attempts, backoff or owner';

CREATE FUNCTION pacelc.drop_queue(name text) RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pacelc
	AS $$
DECLARE
	caller regrole := pacelc._outer_user()::regrole;
	q	pacelc.queues;
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
	DELETE FROM pacelc.message_errors e USING pacelc.messages m
	 WHERE m.queue = q.name AND e.message_id = m.id;
	DELETE FROM pacelc.messages m WHERE m.queue = q.name;
	DELETE FROM pacelc.queues WHERE queues.name = q.name;
END
$$;
COMMENT ON FUNCTION pacelc.drop_queue(text) IS 'drop a queue and its messages';

/*
 * Transactional: the message exists iff the caller commits.  At commit the
 * worker is woken (latch) for a queue with a handler, and listeners of
 * channel pacelc_<queue> are notified for a queue without one (external
 * consumers).  The same idempotency key on the same queue returns the first
 * id.
 */
CREATE FUNCTION pacelc.enqueue(queue text, payload jsonb, delay interval DEFAULT '0',
							   idempotency_key text DEFAULT NULL) RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pacelc
	AS $$
#variable_conflict use_column
DECLARE
	new_id	bigint;
	h		regprocedure;
BEGIN
	PERFORM pacelc._assert_loaded();
	IF queue IS NULL OR payload IS NULL OR delay IS NULL THEN
		RAISE EXCEPTION '% must not be null',
			CASE WHEN queue IS NULL THEN 'queue' WHEN payload IS NULL THEN 'payload' ELSE 'delay' END
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF delay < interval '0' THEN
		RAISE EXCEPTION 'delay must not be negative' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF idempotency_key = '' OR octet_length(idempotency_key) > 255 THEN
		RAISE EXCEPTION 'idempotency_key must have between 1 and 255 bytes' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT q.handler INTO h FROM pacelc.queues q WHERE q.name = enqueue.queue;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'queue % does not exist', quote_literal(queue) USING ERRCODE = 'undefined_object';
	END IF;
	INSERT INTO pacelc.messages AS m (queue, payload, run_at, idempotency_key)
	VALUES (queue, payload, clock_timestamp() + delay, idempotency_key)
	ON CONFLICT (queue, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
	RETURNING m.id INTO new_id;
	IF new_id IS NULL THEN
		SELECT m.id INTO new_id FROM pacelc.messages m
		 WHERE m.queue = enqueue.queue AND m.idempotency_key = enqueue.idempotency_key;
		RETURN new_id;
	END IF;
	/*
	 * External consumers LISTEN on pacelc_<queue>.  Queues served by the
	 * worker need no NOTIFY (the worker's latch is set at commit), and
	 * NOTIFY would cost them dearly: PostgreSQL serializes the commits of
	 * all notifying transactions on one global lock.
	 */
	IF h IS NULL THEN
		PERFORM pg_catalog.pg_notify('pacelc_' || queue, new_id::text);
	END IF;
	IF delay = interval '0' THEN
		PERFORM pacelc._wake_worker_at_commit();
	END IF;
	RETURN new_id;
END
$$;
COMMENT ON FUNCTION pacelc.enqueue(text, jsonb, interval, text) IS
	'add a message to a queue, in the caller''s transaction';

/* For external consumers: leases up to batch due messages (SKIP LOCKED). */
CREATE FUNCTION pacelc.dequeue(queue text, batch integer DEFAULT 1,
							   lease interval DEFAULT '30s')
	RETURNS SETOF pacelc.messages
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pacelc
	AS $$
BEGIN
	PERFORM pacelc._assert_loaded();
	IF queue IS NULL OR batch IS NULL OR lease IS NULL THEN
		RAISE EXCEPTION 'queue, batch and lease must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF batch < 1 OR lease <= interval '0' THEN
		RAISE EXCEPTION 'batch and lease must be positive' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM 1 FROM pacelc.queues q WHERE q.name = dequeue.queue;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'queue % does not exist', quote_literal(queue) USING ERRCODE = 'undefined_object';
	END IF;
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
COMMENT ON FUNCTION pacelc.dequeue(text, integer, interval) IS
	'lease due messages; an unacknowledged message reappears after its lease';

CREATE FUNCTION pacelc._message_for_update(msg bigint) RETURNS pacelc.messages
	LANGUAGE plpgsql SET search_path = pg_catalog, pacelc
	AS $$
DECLARE
	m	pacelc.messages;
BEGIN
	PERFORM pacelc._assert_loaded();
	IF msg IS NULL THEN
		RAISE EXCEPTION 'id must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT * INTO m FROM pacelc.messages WHERE id = msg FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'message % does not exist', msg USING ERRCODE = 'undefined_object';
	END IF;
	RETURN m;
END
$$;

CREATE FUNCTION pacelc.ack(id bigint) RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pacelc
	AS $$
DECLARE
	m	pacelc.messages := pacelc._message_for_update(id);
BEGIN
	IF m.state <> 'ready' THEN
		RAISE EXCEPTION 'message % is already %', m.id, m.state USING ERRCODE = 'invalid_parameter_value';
	END IF;
	UPDATE pacelc.messages SET state = 'done', done_at = clock_timestamp(), leased_until = NULL
	 WHERE messages.id = m.id;
END
$$;
COMMENT ON FUNCTION pacelc.ack(bigint) IS 'a consumer finished a message';

/*
 * Records a failed attempt.  Retried after retry_in, or after the queue's
 * backoff doubled per attempt with +-50% jitter; dead after max_attempts.
 */
CREATE FUNCTION pacelc._fail(m pacelc.messages, error text, sqlstate text,
							 retry_in interval, counted_attempts integer)
	RETURNS text
	LANGUAGE plpgsql SET search_path = pg_catalog, pacelc
	AS $$
DECLARE
	q		pacelc.queues;
	delay	interval;
	new_state text;
BEGIN
	SELECT * INTO q FROM pacelc.queues WHERE name = m.queue;
	delay := coalesce(retry_in,
					  q.backoff * least(power(2, greatest(counted_attempts - 1, 0)), 1e6)
					  * (0.5 + random()));
	new_state := CASE WHEN counted_attempts >= q.max_attempts THEN 'dead' ELSE 'ready' END;
	UPDATE pacelc.messages
	   SET state = new_state, attempts = counted_attempts,
		   run_at = clock_timestamp() + delay, leased_until = NULL,
		   last_error = _fail.error, last_sqlstate = _fail.sqlstate,
		   last_error_at = clock_timestamp()
	 WHERE id = m.id;
	INSERT INTO pacelc.message_errors (message_id, attempt, error, sqlstate)
	VALUES (m.id, counted_attempts, coalesce(error, ''), sqlstate)
	ON CONFLICT (message_id, attempt) DO UPDATE SET error = excluded.error,
		sqlstate = excluded.sqlstate, failed_at = excluded.failed_at;
	RETURN new_state;
END
$$;

CREATE FUNCTION pacelc.nack(id bigint, error text, retry_in interval DEFAULT NULL) RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pacelc
	AS $$
DECLARE
	m	pacelc.messages := pacelc._message_for_update(id);
BEGIN
	IF error IS NULL THEN
		RAISE EXCEPTION 'error must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF retry_in < interval '0' THEN
		RAISE EXCEPTION 'retry_in must not be negative' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF m.state <> 'ready' THEN
		RAISE EXCEPTION 'message % is already %', m.id, m.state USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM pacelc._fail(m, error, NULL, retry_in, greatest(m.attempts, 1));
	PERFORM pacelc._wake_worker_at_commit();
END
$$;
COMMENT ON FUNCTION pacelc.nack(bigint, text, interval) IS
	'a consumer failed a message: retry later, or dead-letter after max_attempts';

CREATE FUNCTION pacelc.retry(id bigint) RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pacelc
	AS $$
DECLARE
	m	pacelc.messages := pacelc._message_for_update(id);
BEGIN
	IF m.state <> 'dead' THEN
		RAISE EXCEPTION 'message % is not a dead letter', m.id
			USING ERRCODE = 'invalid_parameter_value', DETAIL = format('It is %s.', m.state);
	END IF;
	UPDATE pacelc.messages SET state = 'ready', attempts = 0, run_at = clock_timestamp()
	 WHERE messages.id = m.id;
	PERFORM pacelc._wake_worker_at_commit();
END
$$;
COMMENT ON FUNCTION pacelc.retry(bigint) IS 'put a dead letter back into its queue';

/* Deletes done messages older than the given age; the worker calls it. */
CREATE FUNCTION pacelc.purge_done(older_than interval DEFAULT '1 day') RETURNS bigint
	LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pacelc
	BEGIN ATOMIC
		WITH d AS (DELETE FROM pacelc.messages
					WHERE state = 'done' AND done_at < now() - older_than
				   RETURNING id),
			 e AS (DELETE FROM pacelc.message_errors WHERE message_id IN (SELECT id FROM d))
		SELECT count(*) FROM d;
	END;
COMMENT ON FUNCTION pacelc.purge_done(interval) IS 'delete done messages older than the given age';

CREATE VIEW pacelc.queue_status AS
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
	 GROUP BY q.name, q.handler, q.owner, q.max_attempts, q.backoff;
COMMENT ON VIEW pacelc.queue_status IS 'per queue: waiting, in flight, done, dead, oldest age, attempts';

CREATE VIEW pacelc.dead_letters AS
	SELECT id, queue, payload, attempts, last_error, last_sqlstate, last_error_at, enqueued_at
	  FROM pacelc.messages WHERE state = 'dead';
COMMENT ON VIEW pacelc.dead_letters IS 'messages that failed max_attempts times; retry() brings one back';

CREATE FUNCTION pacelc.stats(OUT queue text, OUT depth bigint, OUT in_flight bigint,
							 OUT done bigint, OUT dead bigint, OUT failed_attempts bigint,
							 OUT oldest_age interval, OUT attempts bigint)
	RETURNS SETOF record
	LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pacelc
	BEGIN ATOMIC
		SELECT s.queue, s.depth, s.in_flight, s.done, s.dead,
			   (SELECT count(*) FROM pacelc.message_errors e
				  JOIN pacelc.messages m ON m.id = e.message_id
				 WHERE m.queue = s.queue),
			   s.oldest_age, s.attempts
		  FROM pacelc.queue_status s ORDER BY s.queue;
	END;
COMMENT ON FUNCTION pacelc.stats() IS 'queue statistics';

/* When the worker next has something to do in this database. */
CREATE FUNCTION pacelc._worker_next_wakeup() RETURNS timestamptz
	LANGUAGE sql STABLE SET search_path = pg_catalog, pacelc
	BEGIN ATOMIC
		SELECT least(
			(SELECT min(m.run_at) FROM pacelc.messages m
			  WHERE m.state = 'ready'
				AND m.queue IN (SELECT q.name FROM pacelc.queues q WHERE q.handler IS NOT NULL)),
			pacelc.next_expiry());
	END;

/* The built-in queue where expired holds report their on_expire payload. */
INSERT INTO pacelc.queues (name, owner, max_attempts, backoff)
VALUES ('expired', current_user::text::regrole, 10, '1s');

/* A new database with pacelc is served at once, not at the next scan. */
SELECT pacelc._wake_launcher();

/* ---------------------------- end of section 3 ---------------------------- */




/* Functions are granted explicitly, never to PUBLIC. */
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pacelc FROM PUBLIC;
