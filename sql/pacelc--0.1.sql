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

/* ---------------------------- end of section 2 ---------------------------- */




/* ======================================================================
 * Section 3: compensation queue.  src/queue.c, src/worker.c
 * ====================================================================== */

/* ---------------------------- end of section 3 ---------------------------- */




/* Functions are granted explicitly, never to PUBLIC. */
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pacelc FROM PUBLIC;
