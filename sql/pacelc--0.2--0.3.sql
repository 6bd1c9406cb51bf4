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




/* -------------------------- end of section A -------------------------- */




/* ======================================================================
 * Section B: long-lived clusters (issue 13)
 * ====================================================================== */




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
