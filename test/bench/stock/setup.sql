-- Benchmark schema: pacelc stock plus the plain-SQL designs it is compared with.
CREATE EXTENSION pacelc;

-- What each SKU was stocked with, for the conservation checks.
CREATE TABLE bench_stocked (sku text PRIMARY KEY, stocked bigint NOT NULL);

-- The plain designs: one row per SKU, one row per order.
CREATE TABLE bench_stock (sku text PRIMARY KEY, available bigint NOT NULL CHECK (available >= 0));
CREATE TABLE bench_orders (id bigserial PRIMARY KEY, sku text NOT NULL, qty bigint NOT NULL,
						   created_at timestamptz NOT NULL DEFAULT now());

-- "Effectively unlimited" stock for the throughput contenders.
SELECT pacelc.set_stock('hot', 1000000000000);
SELECT pacelc.set_stock('own-' || i, 1000000000000) FROM generate_series(0, 255) i;
INSERT INTO bench_stock SELECT 'hot', 1000000000000;
INSERT INTO bench_stock SELECT 'own-' || i, 1000000000000 FROM generate_series(0, 255) i;
INSERT INTO bench_stocked SELECT sku, 1000000000000 FROM bench_stock;

-- Sell-out: one row per attempt (design, succeeded?, server-side microseconds).
CREATE UNLOGGED TABLE bench_attempts (design text NOT NULL, ok boolean NOT NULL, us float8 NOT NULL);

-- One pacelc reserve attempt; PC001 (sold out) is an expected outcome, any
-- other error aborts the pgbench client and fails the run.
CREATE FUNCTION bench_attempt_pacelc(p_sku text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz := clock_timestamp();
	rid bigint;
BEGIN
	BEGIN
		rid := pacelc.reserve(p_sku, 1);
	EXCEPTION WHEN SQLSTATE 'PC001' THEN
		rid := NULL;
	END;
	INSERT INTO bench_attempts
		VALUES ('pacelc', rid IS NOT NULL, extract(epoch FROM clock_timestamp() - t0) * 1e6);
	RETURN rid;
END $$;

-- The same attempt with SELECT ... FOR UPDATE on a plain stock row.
CREATE FUNCTION bench_attempt_forupdate(p_sku text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz := clock_timestamp();
	avail bigint;
	ok boolean := false;
BEGIN
	SELECT available INTO avail FROM bench_stock WHERE sku = p_sku FOR UPDATE;
	IF avail >= 1 THEN
		UPDATE bench_stock SET available = available - 1 WHERE sku = p_sku;
		INSERT INTO bench_orders (sku, qty) VALUES (p_sku, 1);
		ok := true;
	END IF;
	INSERT INTO bench_attempts
		VALUES ('forupdate', ok, extract(epoch FROM clock_timestamp() - t0) * 1e6);
	RETURN ok;
END $$;

-- The floor of a durable reserve (insert_bare*.sql): a table of the width
-- of pacelc.reservation_data (the same columns and defaults) with only a
-- primary key, written by the same application role as the reserves.
CREATE TABLE bench_bare (
	id			bigserial PRIMARY KEY,
	sku			text NOT NULL,
	qty			bigint NOT NULL,
	state		text NOT NULL DEFAULT 'held',
	folded		boolean NOT NULL DEFAULT false,
	created_at	timestamptz NOT NULL DEFAULT now(),
	expires_at	timestamptz,
	ended_at	timestamptz,
	idempotency_key text,
	on_expire	jsonb,
	owner		regrole
);

-- The application role of the reserve-alone contenders (reserve_hot*.sql,
-- insert_bare*.sql): an ordinary role with pacelc's application grant, as
-- the README tells an application to set up.
CREATE ROLE bench_app LOGIN;
GRANT pacelc_app TO bench_app;
GRANT INSERT, SELECT ON bench_bare TO bench_app;
GRANT USAGE ON SEQUENCE bench_bare_id_seq TO bench_app;
