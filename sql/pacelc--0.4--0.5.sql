/* pacelc 0.4 -> 0.5 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION pacelc UPDATE TO '0.5'" to load this file. \quit

/* ======================================================================
 * Section C: the hot paths pin their search_path in C (issue 15)
 * ====================================================================== */

/*
 * The C entry points that act as the extension's owner pin the search
 * path themselves (pacelc_run_as_owner(), src/privilege.c): on PostgreSQL
 * 15 a SET clause on the function cost every reserve and enqueue a GUC
 * save and restore and the session's search path recomputed.  So they
 * lose their SET clause; every other function keeps it.
 * pacelc_private.owner_entry_symbols() names them, for pin_functions()
 * and the tests.
 */
CREATE FUNCTION pacelc_private.owner_entry_symbols() RETURNS text[]
	LANGUAGE sql IMMUTABLE
	RETURN ARRAY['pacelc_enqueue', 'pacelc_set_stock', 'pacelc_add_stock',
				 'pacelc_reserve', 'pacelc_try_reserve', 'pacelc_reserve_all',
				 'pacelc_confirm', 'pacelc_release', 'pacelc_available',
				 'pacelc_expire_holds'];

/*
 * And the C functions of the CHECK constraints, which compare a length:
 * they resolve no name and run no SQL, so a SET clause only cost every row
 * written a GUC save and restore (a reserve with an idempotency key: one
 * per call).
 */
CREATE FUNCTION pacelc_private.pure_c_symbols() RETURNS text[]
	LANGUAGE sql IMMUTABLE
	RETURN ARRAY['pacelc_private_valid_sku', 'pacelc_private_valid_key',
				 'pacelc_private_valid_queue_name'];

CREATE OR REPLACE FUNCTION pacelc_private.pin_functions() RETURNS void
	LANGUAGE plpgsql
	AS $$
DECLARE
	f	pg_catalog.regprocedure;
	own	boolean;
BEGIN
	FOR f, own IN
		SELECT p.oid,
			   l.lanname OPERATOR(pg_catalog.=) 'c'
			   AND p.prosrc OPERATOR(pg_catalog.=) ANY
				   (pacelc_private.owner_entry_symbols() OPERATOR(pg_catalog.||)
					pacelc_private.pure_c_symbols())
		  FROM pg_catalog.pg_proc p
		  JOIN pg_catalog.pg_language l ON l.oid OPERATOR(pg_catalog.=) p.prolang
		 WHERE p.pronamespace OPERATOR(pg_catalog.=) ANY
			   (ARRAY['pacelc'::pg_catalog.regnamespace, 'pacelc_private'::pg_catalog.regnamespace])
	LOOP
		IF own THEN
			EXECUTE pg_catalog.format('ALTER FUNCTION %s RESET search_path', f);
		ELSE
			EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog, pacelc, pg_temp', f);
		END IF;
	END LOOP;
	REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pacelc FROM PUBLIC;
	REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pacelc_private FROM PUBLIC;
END
$$;

/*
 * The message table's indexes (issue 15).  purge_done(), which the worker
 * runs every pacelc.worker_naptime (5 s) with pacelc.done_retention
 * (1 day), had no index to find the handled messages by and read the
 * whole table, a day of messages, each time: a partial index on done_at of
 * the handled ones.  And the unique index on idempotency keys gets an
 * entry only for messages that have a key (NULL keys never conflicted):
 * most messages have none, and every message's row was written three
 * times (enqueue, lease, done), each time with an entry in that index.
 * ON CONFLICT (queue, idempotency_key) WHERE idempotency_key IS NOT NULL,
 * what enqueue has always said, infers the partial index.
 */
/*
 * The strongest lock first (DROP INDEX's): upgrading the index build's
 * SHARE lock midway made a deadlock with any transaction that had the
 * table already and then wrote to it, as a worker's batch does (it locks
 * its messages, runs their handlers, then marks them done: rolled back,
 * its attempts counted) and a client that reads, then enqueues.  Waiting
 * here for them, the update lets them go ahead and finish.
 */
LOCK TABLE pacelc.messages IN ACCESS EXCLUSIVE MODE;
CREATE INDEX messages_done_idx ON pacelc.messages (done_at) WHERE state = 'done';
CREATE UNIQUE INDEX message_idempotency_05 ON pacelc.messages (queue, idempotency_key)
	WHERE idempotency_key IS NOT NULL;
DROP INDEX pacelc.message_idempotency;
ALTER INDEX pacelc.message_idempotency_05 RENAME TO message_idempotency;

/*
 * purge_done() deletes the purged messages' errors through their ids (the
 * primary key's probe for each, from an array): as a join, its generic
 * plan kept by the worker (enable_seqscan off) since message_errors was
 * empty walked the whole error table per purge, every dead letter's
 * errors every pacelc.worker_naptime (issue 15).
 */
CREATE OR REPLACE FUNCTION pacelc_private.purge_done(caller pg_catalog.oid, older_than pg_catalog.interval)
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
		 e AS (DELETE FROM pacelc.message_errors x
				WHERE x.message_id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT d.id FROM d)))
	SELECT pg_catalog.count(*) INTO n FROM d;
	RETURN n;
END
$$;

/* ======================================================================
 * Section Z: every function pins its search_path (the C entry points
 * above in C); nothing is executable by PUBLIC.
 * ====================================================================== */

SELECT pacelc_private.pin_functions();
