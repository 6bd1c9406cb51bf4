/* pacelc 0.6 -> 0.7 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION pacelc UPDATE TO '0.7'" to load this file. \quit

/*
 * queue_status counts the worker's batches as in flight again.  Since 0.6
 * a worker locks a batch and runs it in one transaction instead of leasing
 * each message, so the table shows those messages as due (ready, no lease)
 * while their handlers run.  The workers keep the size of their open batch
 * in shared memory; worker_batches() reads it for this database, and the
 * view moves those messages from "due" to "in flight".  A view's
 * functions are checked against its reader, and a role may read
 * queue_status through a grant of its own (GRANT SELECT ON ALL TABLES IN
 * SCHEMA pacelc): so PUBLIC may execute it, the one function in
 * pacelc_private it may; no one can name it (pacelc_private is closed),
 * and the view shows only the queues its reader may see.
 */
CREATE FUNCTION pacelc_private.worker_batches(OUT queue pg_catalog.text,
											  OUT messages pg_catalog.int4)
	RETURNS SETOF record
	LANGUAGE c VOLATILE
	AS 'MODULE_PATHNAME', 'pacelc_private_worker_batches';

CREATE OR REPLACE VIEW pacelc.queue_status WITH (security_barrier) AS
	SELECT q.name AS queue, q.handler, q.owner,
		   q.max_attempts, q.backoff,
		   GREATEST(count(m.id) FILTER (WHERE m.state = 'ready' AND coalesce(m.leased_until, '-infinity') <= now() AND m.run_at <= now())
							   - coalesce(w.messages, 0), 0) AS due,
		   count(m.id) FILTER (WHERE m.state = 'ready' AND m.leased_until IS NULL AND m.run_at > now()) AS scheduled,
		   count(m.id) FILTER (WHERE m.state = 'ready' AND m.leased_until > now())
		   + coalesce(w.messages, 0) AS in_flight,
		   count(m.id) FILTER (WHERE m.state = 'ready') AS depth,
		   count(m.id) FILTER (WHERE m.state = 'done') AS done,
		   count(m.id) FILTER (WHERE m.state = 'dead') AS dead,
		   now() - min(m.enqueued_at) FILTER (WHERE m.state = 'ready') AS oldest_age,
		   coalesce(sum(m.attempts), 0) AS attempts
	  FROM pacelc.queues q
	  LEFT JOIN pacelc.messages m ON m.queue = q.name
	  LEFT JOIN (SELECT b.queue, sum(b.messages) AS messages
				   FROM pacelc_private.worker_batches() b
				  GROUP BY b.queue) w ON w.queue = q.name
	 WHERE pg_catalog.pg_has_role(CURRENT_USER, q.owner::pg_catalog.oid, 'USAGE')
		OR pg_catalog.pg_has_role(CURRENT_USER, 'pacelc_monitor', 'USAGE')
		OR EXISTS (SELECT FROM pacelc.queue_grants g
					WHERE g.queue = q.name
					  AND pg_catalog.pg_has_role(CURRENT_USER, g.grantee::pg_catalog.oid, 'USAGE'))
	 GROUP BY q.name, q.handler, q.owner, q.max_attempts, q.backoff, w.messages;

/* ======================================================================
 * Section Z: every function pins its search_path (the C entry points
 * in C); nothing is executable by PUBLIC.
 * ====================================================================== */

SELECT pacelc_private.pin_functions();

/* the view's readers, whoever they are (after pin_functions(), which revokes) */
GRANT EXECUTE ON FUNCTION pacelc_private.worker_batches() TO PUBLIC;
