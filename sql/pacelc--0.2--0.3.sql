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
			   pg_catalog.format('key %s names reservations that do not exist', i.key)
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




/* -------------------------- end of section C -------------------------- */




/* ======================================================================
 * Section D: read-your-writes (issue 11)
 * ====================================================================== */




/* -------------------------- end of section D -------------------------- */
