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

/*
 * pacelc on Citus (README "Scaling out with Citus").  Every name of Citus
 * is reached through dynamic SQL, so that nothing here needs Citus at
 * CREATE EXTENSION time: without Citus these functions raise 55000.
 *
 * The stock of a SKU lives on the node that owns the SKU's shard of
 * pacelc.sku_home, a table that only anchors the colocation (it never has
 * a row); the stock functions are distributed by their SKU argument and
 * colocated with it, so that the coordinator delegates each call to the
 * SKU's node, also inside transaction blocks (force_delegation).
 */
CREATE TABLE pacelc.sku_home (
	sku			pg_catalog.text NOT NULL,
	CONSTRAINT sku_home_stays_empty CHECK (false) NO INHERIT
);
COMMENT ON TABLE pacelc.sku_home IS
	'on Citus: distributed by SKU, the colocation anchor of the stock functions (never has a row)';
/* citus_reserve_all() looks up the shards of its callers' SKUs */
GRANT SELECT ON pacelc.sku_home TO pacelc_app, pacelc_monitor;

/* confirm and release with the SKU: routable by it, and checked against it */
CREATE FUNCTION pacelc.confirm(id bigint, sku text) RETURNS void
	LANGUAGE c SECURITY INVOKER AS 'MODULE_PATHNAME', 'pacelc_confirm';
COMMENT ON FUNCTION pacelc.confirm(bigint, text) IS
	'confirm(id), for a reservation of this SKU only (on Citus: routed to the SKU''s node)';
CREATE FUNCTION pacelc.release(id bigint, sku text) RETURNS void
	LANGUAGE c SECURITY INVOKER AS 'MODULE_PATHNAME', 'pacelc_release';
COMMENT ON FUNCTION pacelc.release(bigint, text) IS
	'release(id), for a reservation of this SKU only (on Citus: routed to the SKU''s node)';

/* The node token: "system identifier:LSN" (src/session_lsn.c). */
CREATE FUNCTION pacelc.node_token() RETURNS text
	LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'pacelc_node_token';
COMMENT ON FUNCTION pacelc.node_token() IS
	'a read-your-writes token naming this server: "system identifier:LSN", for pacelc.read_after on its standbys; take it after COMMIT';

/*
 * The routed forms.  SQL functions, SECURITY INVOKER: they only call the
 * entry points, which judge the caller themselves.  The first argument is
 * the distribution argument that routes the call.
 */
CREATE FUNCTION pacelc.reserve_all_at(sku text, skus text[], qtys bigint[],
									  ttl interval DEFAULT NULL,
									  idempotency_key text DEFAULT NULL,
									  on_expire jsonb DEFAULT NULL) RETURNS bigint[]
	LANGUAGE sql VOLATILE SECURITY INVOKER
	RETURN pacelc.reserve_all(skus, qtys, ttl, idempotency_key, on_expire);
COMMENT ON FUNCTION pacelc.reserve_all_at(text, text[], bigint[], interval, text, jsonb) IS
	'reserve_all() on the node that owns the first argument''s SKU (citus_reserve_all() calls it once per node)';
CREATE FUNCTION pacelc.citus_token(sku text) RETURNS text
	LANGUAGE sql VOLATILE SECURITY INVOKER
	RETURN pacelc.node_token();
COMMENT ON FUNCTION pacelc.citus_token(text) IS
	'node_token() of the node that owns the SKU (through the Citus coordinator); take it after COMMIT';


/*
 * What every pacelc.citus_* function of the coordinator checks first: Citus
 * is installed (else 55000, with how to install it) and this is its
 * coordinator (else 55000 naming the function).  SECURITY INVOKER like its
 * callers, and granted to the roles they are granted to (Section Z), as
 * _replica_status() is for its view: it only reads.
 */
CREATE FUNCTION pacelc._citus_coordinator(fn text) RETURNS void
	LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $$
DECLARE
	coordinator pg_catalog.bool;
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension e
					WHERE e.extname OPERATOR(pg_catalog.=) 'citus') THEN
		RAISE EXCEPTION 'Citus is not installed in this database'
			USING ERRCODE = '55000',
				  DETAIL = 'The pacelc.citus_* functions run pacelc on a Citus cluster.',
				  HINT = 'Put citus first in shared_preload_libraries (''citus,pacelc'') and run CREATE EXTENSION citus on every node.';
	END IF;
	EXECUTE 'SELECT pg_catalog.citus_is_coordinator()' INTO coordinator;
	IF NOT coordinator THEN
		RAISE EXCEPTION 'function "%" must run on the Citus coordinator', fn USING ERRCODE = '55000';
	END IF;
END
$$;

/*
 * citus_setup(): one call on the coordinator, again after adding a node.
 * Distributes pacelc.sku_home by SKU, distributes the stock functions by
 * SKU colocated with it, and gives every worker its own range of
 * reservation ids: node group g issues ids from g * 2^48 + 1 on, so an id
 * names its node and no two nodes issue the same id.  SECURITY INVOKER,
 * granted to no one: a superuser runs it (Citus connects to the workers as
 * the calling role).
 */
CREATE FUNCTION pacelc.citus_setup(shard_count integer DEFAULT NULL)
	RETURNS TABLE (node_group integer, node text, first_reservation_id bigint)
	LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $fn$
DECLARE
	f	pg_catalog.text;
	r	record;
	ver	pg_catalog.text;
BEGIN
	PERFORM pacelc._citus_coordinator('pacelc.citus_setup');
	IF shard_count IS NOT NULL AND shard_count OPERATOR(pg_catalog.<) 1 THEN
		RAISE EXCEPTION 'shard_count must be positive' USING ERRCODE = '22023';
	END IF;
	SELECT e.extversion INTO ver FROM pg_catalog.pg_extension e
	 WHERE e.extname OPERATOR(pg_catalog.=) 'pacelc';
	/* every worker has pacelc, in this version */
	FOR r IN EXECUTE $q$SELECT w.nodename, w.nodeport, w.success, w.result
						  FROM pg_catalog.run_command_on_workers(
							$c$SELECT coalesce((SELECT e.extversion FROM pg_catalog.pg_extension e
															WHERE e.extname OPERATOR(pg_catalog.=) 'pacelc'), 'none')$c$) w$q$
	LOOP
		IF NOT r.success OR r.result OPERATOR(pg_catalog.<>) ver THEN
			RAISE EXCEPTION 'extension "pacelc" % is not installed on worker "%:%"', ver, r.nodename, r.nodeport
				USING ERRCODE = '55000',
					  DETAIL = pg_catalog.format('The worker answered: %s.', r.result),
					  HINT = 'Preload citus,pacelc on every node and run CREATE EXTENSION pacelc there (or ALTER EXTENSION pacelc UPDATE).';
		END IF;
	END LOOP;

	IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p
					WHERE p.logicalrelid OPERATOR(pg_catalog.=) 'pacelc.sku_home'::pg_catalog.regclass) THEN
		EXECUTE $q$SELECT pg_catalog.create_distributed_table('pacelc.sku_home', 'sku',
								colocate_with => 'none', shard_count => $1)$q$
			USING coalesce(shard_count,
									  pg_catalog.current_setting('citus.shard_count')::pg_catalog.int4);
	END IF;

	FOREACH f IN ARRAY ARRAY[
		'pacelc.set_stock(text, bigint)', 'pacelc.add_stock(text, bigint)',
		'pacelc.reserve(text, bigint, interval, text, jsonb)',
		'pacelc.try_reserve(text, bigint, interval, text, jsonb)',
		'pacelc.available(text)',
		'pacelc.confirm(bigint, text)', 'pacelc.release(bigint, text)',
		'pacelc.reserve_all_at(text, text[], bigint[], interval, text, jsonb)',
		'pacelc.citus_token(text)']
	LOOP
		EXECUTE $q$SELECT pg_catalog.create_distributed_function($1::pg_catalog.regprocedure, 'sku',
								colocate_with => 'pacelc.sku_home', force_delegation => true)$q$
			USING f;
	END LOOP;

	/* each worker's ids: from its node group * 2^48 + 1 on */
	FOR r IN EXECUTE $q$SELECT w.nodename, w.nodeport, w.success, w.result
						  FROM pg_catalog.run_command_on_workers($c$
DO $d$
DECLARE
	g	pg_catalog.int8 := (SELECT l.groupid FROM pg_catalog.pg_dist_local_group l);
	lo	pg_catalog.int8 := g OPERATOR(pg_catalog.*) (pg_catalog.int8 '1' OPERATOR(pg_catalog.<<) 48);
	hi	pg_catalog.int8 := lo OPERATOR(pg_catalog.+) ((pg_catalog.int8 '1' OPERATOR(pg_catalog.<<) 48) OPERATOR(pg_catalog.-) 1);
	last	pg_catalog.int8;
BEGIN
	IF g OPERATOR(pg_catalog.<) 1 OR g OPERATOR(pg_catalog.>) 32766 THEN
		RAISE EXCEPTION 'node group % has no range of reservation ids', g;
	END IF;
	SELECT s.last_value INTO last FROM pacelc.reservation_id_seq s;
	IF last OPERATOR(pg_catalog.<) lo THEN
		EXECUTE pg_catalog.format('ALTER SEQUENCE pacelc.reservation_id_seq MINVALUE %s MAXVALUE %s START WITH %s RESTART WITH %s NO CYCLE',
								  lo OPERATOR(pg_catalog.+) 1, hi, lo OPERATOR(pg_catalog.+) 1, lo OPERATOR(pg_catalog.+) 1);
	ELSIF last OPERATOR(pg_catalog.>) hi THEN
		RAISE EXCEPTION 'reservation ids of this node are beyond the range of node group %', g;
	ELSE
		EXECUTE pg_catalog.format('ALTER SEQUENCE pacelc.reservation_id_seq MINVALUE %s MAXVALUE %s START WITH %s NO CYCLE',
								  lo OPERATOR(pg_catalog.+) 1, hi, lo OPERATOR(pg_catalog.+) 1);
	END IF;
END
$d$
$c$) w$q$
	LOOP
		IF NOT r.success THEN
			RAISE EXCEPTION 'could not set the reservation ids of worker "%:%"', r.nodename, r.nodeport
				USING ERRCODE = '55000', DETAIL = r.result;
		END IF;
	END LOOP;

	RETURN QUERY EXECUTE $q$SELECT n.groupid::pg_catalog.int4, n.nodename OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) n.nodeport,
								   (n.groupid::pg_catalog.int8 OPERATOR(pg_catalog.<<) 48) OPERATOR(pg_catalog.+) 1
							  FROM pg_catalog.pg_dist_node n
							 WHERE n.noderole OPERATOR(pg_catalog.=) 'primary' AND n.groupid OPERATOR(pg_catalog.>) 0
							 ORDER BY n.groupid$q$;
END
$fn$;
COMMENT ON FUNCTION pacelc.citus_setup(integer) IS
	'on the Citus coordinator: distribute the stock functions by SKU and give every worker its range of reservation ids (run again after adding a node)';

/*
 * A cart across nodes, through the coordinator: one reserve_all() per node
 * (reserve_all_at, delegated to the node), all in the caller's transaction,
 * which Citus commits on every node with two-phase commit: all or nothing.
 * The idempotency key is used on every node for that node's lines.
 */
CREATE FUNCTION pacelc.citus_reserve_all(skus text[], qtys bigint[],
										 ttl interval DEFAULT NULL,
										 idempotency_key text DEFAULT NULL,
										 on_expire jsonb DEFAULT NULL) RETURNS bigint[]
	LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $$
DECLARE
	r		record;
	ids		pg_catalog.int8[];
	result	pg_catalog.int8[];
	i		pg_catalog.int4;
BEGIN
	PERFORM pacelc._citus_coordinator('pacelc.citus_reserve_all');
	IF skus IS NULL OR qtys IS NULL
	   OR pg_catalog.cardinality(skus) OPERATOR(pg_catalog.<>) pg_catalog.cardinality(qtys)
	   OR pg_catalog.cardinality(skus) OPERATOR(pg_catalog.=) 0
	   OR pg_catalog.cardinality(skus) OPERATOR(pg_catalog.>) 1000
	   OR pg_catalog.array_position(skus, NULL) IS NOT NULL THEN
		/* what reserve_all() says of such a cart (it fails before touching stock) */
		RETURN pacelc.reserve_all(skus, qtys, ttl, idempotency_key, on_expire);
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p
					WHERE p.logicalrelid OPERATOR(pg_catalog.=) 'pacelc.sku_home'::pg_catalog.regclass) THEN
		RAISE EXCEPTION 'table "pacelc.sku_home" is not distributed'
			USING ERRCODE = '55000', HINT = 'Run SELECT pacelc.citus_setup() on the coordinator.';
	END IF;
	result := pg_catalog.array_fill(NULL::pg_catalog.int8, ARRAY[pg_catalog.cardinality(skus)]);
	FOR r IN EXECUTE $q$
		SELECT pl.groupid,
			   pg_catalog.array_agg(u.ord ORDER BY u.ord) AS ords,
			   pg_catalog.array_agg(u.sku ORDER BY u.ord) AS skus,
			   pg_catalog.array_agg(u.qty ORDER BY u.ord) AS qtys
		  FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) WITH ORDINALITY u(sku, qty, ord)
		  JOIN pg_catalog.pg_dist_placement pl
			ON pl.shardid OPERATOR(pg_catalog.=)
			   pg_catalog.get_shard_id_for_distribution_column('pacelc.sku_home', u.sku)
		 GROUP BY pl.groupid ORDER BY pl.groupid$q$ USING skus, qtys
	LOOP
		/* constants, so that Citus delegates the call to the node */
		EXECUTE pg_catalog.format(
			'SELECT r FROM pacelc.reserve_all_at(%L, %L::pg_catalog.text[], %L::pg_catalog.int8[], %L::pg_catalog.interval, %L::pg_catalog.text, %L::pg_catalog.jsonb) r',
			r.skus[1], r.skus, r.qtys, ttl, idempotency_key, on_expire) INTO ids;
		FOR i IN 1 .. pg_catalog.cardinality(r.ords) LOOP
			result[r.ords[i]] := ids[i];
		END LOOP;
	END LOOP;
	IF pg_catalog.array_position(result, NULL) IS NOT NULL THEN
		RAISE EXCEPTION 'a line of the cart has no node' USING ERRCODE = 'XX000';
	END IF;
	RETURN result;
END
$$;
COMMENT ON FUNCTION pacelc.citus_reserve_all(text[], bigint[], interval, text, jsonb) IS
	'reserve_all() through the Citus coordinator: a cart across nodes, all or nothing (two-phase commit)';

/*
 * Tokens of every worker, for a client that reads from the workers'
 * standbys (one round trip to each worker).  The tokens are taken on
 * connections of their own, so they must follow the commit they are to
 * cover: refused in a transaction that has already worked on other nodes.
 */
CREATE FUNCTION pacelc.citus_tokens()
	RETURNS TABLE (node_group integer, node text, token text)
	LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $$
DECLARE
	txn		pg_catalog.int8;
BEGIN
	PERFORM pacelc._citus_coordinator('pacelc.citus_tokens');
	/* Citus numbers a transaction when it first works on other nodes */
	EXECUTE 'SELECT t.transaction_number FROM pg_catalog.get_current_transaction_id() t' INTO txn;
	IF txn OPERATOR(pg_catalog.<>) 0 THEN
		RAISE EXCEPTION 'function "pacelc.citus_tokens" cannot run in a transaction that has worked on other nodes'
			USING ERRCODE = '25001',
				  DETAIL = 'The tokens are taken on connections of their own and must follow the commit they cover.',
				  HINT = 'Call it after COMMIT, or use pacelc.citus_token(sku) in the transaction.';
	END IF;
	RETURN QUERY EXECUTE $q$
		SELECT n.groupid::pg_catalog.int4, w.nodename OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) w.nodeport,
			   CASE WHEN w.success THEN w.result END
		  FROM pg_catalog.run_command_on_workers('SELECT pacelc.node_token()') w
		  JOIN pg_catalog.pg_dist_node n
			ON n.nodename OPERATOR(pg_catalog.=) w.nodename AND n.nodeport OPERATOR(pg_catalog.=) w.nodeport
		 ORDER BY n.groupid$q$;
END
$$;
COMMENT ON FUNCTION pacelc.citus_tokens() IS
	'on the Citus coordinator: node_token() of every worker (after COMMIT)';

/*
 * verify() of every worker in one call, plus a check that only Citus can
 * make: a SKU stocked on a worker that does not own it (set_stock called
 * on the wrong worker directly), which calls through the coordinator would
 * never reach.
 */
CREATE FUNCTION pacelc.citus_verify()
	RETURNS TABLE (node text, problem text, sku text, detail text)
	LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $$
BEGIN
	PERFORM pacelc._citus_coordinator('pacelc.citus_verify');
	RETURN QUERY EXECUTE $q$
		SELECT w.nodename OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) w.nodeport,
			   CASE WHEN w.success THEN v.problem ELSE 'worker_unreachable' END,
			   v.sku, CASE WHEN w.success THEN v.detail ELSE w.result END
		  FROM pg_catalog.run_command_on_workers($c$
			SELECT coalesce(pg_catalog.json_agg(x), '[]') FROM (
				SELECT v.problem, v.sku, v.detail FROM pacelc.verify() v
				UNION ALL
				SELECT 'sku_on_wrong_node', s.sku,
					   'this worker has stock of the SKU, but Citus routes it to another node'
				  FROM pacelc.stock s
				 WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_dist_placement p
									WHERE p.shardid OPERATOR(pg_catalog.=)
										  pg_catalog.get_shard_id_for_distribution_column('pacelc.sku_home', s.sku)
									  AND p.groupid OPERATOR(pg_catalog.=)
										  (SELECT l.groupid FROM pg_catalog.pg_dist_local_group l))) x
		  $c$) w
		  LEFT JOIN LATERAL pg_catalog.json_to_recordset(CASE WHEN w.success THEN w.result::pg_catalog.json END)
			   AS v(problem pg_catalog.text, sku pg_catalog.text, detail pg_catalog.text) ON true
		 WHERE NOT w.success OR v.problem IS NOT NULL
		 ORDER BY 1, 2, 3$q$;
END
$$;
COMMENT ON FUNCTION pacelc.citus_verify() IS
	'on the Citus coordinator: verify() of every worker, and SKUs stocked on a worker that does not own them; no rows = all is well';

/*
 * Shard moves are refused: the stock of a SKU (its row, its reservations,
 * its escrow counter in shared memory) stays on the node that had it, so a
 * shard of pacelc.sku_home created on a node that the metadata does not
 * place it on (citus_move_shard_placement, the rebalancer, splits, copies)
 * is an error there, and the operation rolls back.
 */
CREATE FUNCTION pacelc_private.citus_refuse_shard_move() RETURNS event_trigger
	LANGUAGE plpgsql AS $$
DECLARE
	c		record;
	shard	pg_catalog.int8;
	refuse	pg_catalog.bool;
BEGIN
	IF pg_catalog.to_regclass('pg_catalog.pg_dist_placement') IS NULL THEN
		RETURN;
	END IF;
	FOR c IN SELECT d.object_identity FROM pg_catalog.pg_event_trigger_ddl_commands() d
			  WHERE d.object_type OPERATOR(pg_catalog.=) 'table'
				AND d.object_identity OPERATOR(pg_catalog.~) '^pacelc\.sku_home_[0-9]+$'
	LOOP
		shard := pg_catalog.substring(c.object_identity, '([0-9]+)$')::pg_catalog.int8;
		EXECUTE $q$SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_shard s
								   WHERE s.logicalrelid OPERATOR(pg_catalog.=) 'pacelc.sku_home'::pg_catalog.regclass)
					   AND NOT EXISTS (SELECT FROM pg_catalog.pg_dist_placement p
										WHERE p.shardid OPERATOR(pg_catalog.=) $1
										  AND p.groupid OPERATOR(pg_catalog.=)
											  (SELECT l.groupid FROM pg_catalog.pg_dist_local_group l))$q$
			INTO refuse USING shard;
		IF refuse THEN
			RAISE EXCEPTION 'shards of table "pacelc.sku_home" cannot move'
				USING ERRCODE = '0A000',
					  DETAIL = pg_catalog.format('Shard %s would be placed on a node that does not own its SKUs'' stock: the stock stays where it is.', shard),
					  HINT = 'Leave pacelc.sku_home out of moves, splits and rebalancing; add capacity as new nodes for new SKUs (see README "Scaling out with Citus").';
		END IF;
	END LOOP;
END
$$;
CREATE EVENT TRIGGER pacelc_citus_refuse_shard_move ON ddl_command_end
	WHEN TAG IN ('CREATE TABLE')
	EXECUTE FUNCTION pacelc_private.citus_refuse_shard_move();

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

/*
 * The rights on what this version adds.  What 0.3 granted stays granted
 * (pin_functions() revokes from PUBLIC only, and no function or view of
 * 0.3 is dropped here).
 */
/* the Citus functions call it as their caller (it only reads) */
GRANT EXECUTE ON FUNCTION pacelc._citus_coordinator(text) TO pacelc_app, pacelc_monitor;
GRANT EXECUTE ON FUNCTION
	pacelc.node_token(), pacelc.citus_token(text), pacelc.citus_tokens(),
	pacelc.citus_verify()
	TO pacelc_app, pacelc_monitor;
GRANT EXECUTE ON FUNCTION
	pacelc.confirm(bigint, text), pacelc.release(bigint, text),
	pacelc.reserve_all_at(text, text[], bigint[], interval, text, jsonb),
	pacelc.citus_reserve_all(text[], bigint[], interval, text, jsonb)
	TO pacelc_app;
