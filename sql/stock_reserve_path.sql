-- The reserve path without SPI (issue 15): the rows it writes are the rows
-- the INSERT statements wrote, and a table it was not written for falls
-- back to them.
CREATE EXTENSION pacelc;
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\set filename :abs_srcdir '/sql/include/err.sql'
\i :filename
DROP ROLE IF EXISTS regress_pacelc_rp_app, regress_pacelc_rp_other;
CREATE ROLE regress_pacelc_rp_app LOGIN IN ROLE pacelc_app;
CREATE ROLE regress_pacelc_rp_other LOGIN IN ROLE pacelc_app;
SELECT pacelc.set_stock('rp', 100);

-- every column as the INSERT filled it: defaults, owner, ttl, key, payload
SET ROLE regress_pacelc_rp_app;
BEGIN;
SELECT pacelc.reserve('rp', 2, ttl => '10 min', idempotency_key => 'rp-1',
					  on_expire => '{"order": 1}') AS r1 \gset
SELECT pacelc.reserve('rp', 2, ttl => '10 min', idempotency_key => 'rp-1',
					  on_expire => '{"order": 1}') = :r1 AS same_answer_same_xact;
COMMIT;
SELECT pacelc.reserve('rp') AS r2 \gset
RESET ROLE;
SELECT id = :r1 AS is_r1, sku, qty, state, folded, created_at <= now() AS created,
	   expires_at BETWEEN now() + '9 min' AND now() + '11 min' AS ttl_ok,
	   ended_at, idempotency_key, on_expire, owner
  FROM pacelc.reservation_data ORDER BY id;
SELECT key, skus, qtys, ids = ARRAY[:r1]::bigint[] AS ids_ok, owner,
	   created_at <= now() AS created
  FROM pacelc.idempotency_keys;
SELECT pg_catalog.pg_get_serial_sequence('pacelc.reservation_data', 'id') IS NOT NULL AS seq,
	   (SELECT last_value FROM pacelc.reservation_id_seq) = :r2 AS ids_from_sequence;

-- keys: a retry answers, a different request is 22023, another role has its own
SET ROLE regress_pacelc_rp_app;
SELECT pacelc.reserve('rp', 2, ttl => '10 min', idempotency_key => 'rp-1') = :r1 AS retry_answers;
SELECT pg_temp.err($$SELECT pacelc.reserve('rp', 3, idempotency_key => 'rp-1')$$);
SET ROLE regress_pacelc_rp_other;
SELECT pacelc.reserve('rp', 2, idempotency_key => 'rp-1') <> :r1 AS own_key;
-- a savepoint rolled back takes its row and key with it
BEGIN;
SAVEPOINT s;
SELECT pacelc.reserve('rp', 1, idempotency_key => 'rp-2') IS NOT NULL AS reserved;
ROLLBACK TO s;
SELECT pacelc.reserve('rp', 1, idempotency_key => 'rp-2') IS NOT NULL AS reserved_again;
COMMIT;
-- REPEATABLE READ sees its own keys
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT pacelc.reserve('rp', 1, idempotency_key => 'rp-3') AS r3 \gset
SELECT pacelc.reserve('rp', 1, idempotency_key => 'rp-3') = :r3 AS rr_same;
COMMIT;
RESET ROLE;
SELECT owner, count(*) FROM pacelc.reservation_data GROUP BY owner ORDER BY owner::text;
SELECT sku, on_hand, held, available FROM pacelc.stock;

-- a column the fast path does not know: the SPI statement fills it
ALTER TABLE pacelc.reservation_data ADD COLUMN note text DEFAULT 'from the default';
ALTER TABLE pacelc.idempotency_keys ADD COLUMN note text DEFAULT 'from the default';
SET ROLE regress_pacelc_rp_app;
SELECT pacelc.reserve('rp', 1, idempotency_key => 'rp-4') AS r4 \gset
RESET ROLE;
SELECT note FROM pacelc.reservation_data WHERE id = :r4;
SELECT note FROM pacelc.idempotency_keys WHERE key = 'rp-4';
-- dropped again: the fast path skips the dropped column
ALTER TABLE pacelc.reservation_data DROP COLUMN note;
ALTER TABLE pacelc.idempotency_keys DROP COLUMN note;
SET ROLE regress_pacelc_rp_app;
SELECT pacelc.reserve('rp', 1, idempotency_key => 'rp-5') AS r5 \gset
SELECT pacelc.reserve('rp', 1, idempotency_key => 'rp-5') = :r5 AS retry_answers;
RESET ROLE;
SELECT sku, qty, state, idempotency_key, owner FROM pacelc.reservation_data WHERE id = :r5;
-- a CHECK constraint added later: checked as the INSERT would
ALTER TABLE pacelc.reservation_data ADD CONSTRAINT regress_small CHECK (qty < 50);
SET ROLE regress_pacelc_rp_app;
SELECT pg_temp.err($$SELECT pacelc.reserve('rp', 60)$$);
SELECT pacelc.reserve('rp', 1) IS NOT NULL AS reserved;
RESET ROLE;
ALTER TABLE pacelc.reservation_data DROP CONSTRAINT regress_small;
-- a CHECK calling a SQL function (inlined when compiled): replacing the
-- function takes effect at once, as it does for the INSERT statement
CREATE FUNCTION public.regress_rp_ok(q bigint) RETURNS boolean LANGUAGE sql IMMUTABLE
	AS 'SELECT q < 50';
ALTER TABLE pacelc.reservation_data ADD CONSTRAINT regress_fn CHECK (public.regress_rp_ok(qty));
SET ROLE regress_pacelc_rp_app;
SELECT pacelc.reserve('rp', 1) IS NOT NULL AS reserved;
RESET ROLE;
CREATE OR REPLACE FUNCTION public.regress_rp_ok(q bigint) RETURNS boolean LANGUAGE sql IMMUTABLE
	AS 'SELECT q < 1';
SET ROLE regress_pacelc_rp_app;
SELECT pg_temp.err($$SELECT pacelc.reserve('rp', 1)$$);
RESET ROLE;
ALTER TABLE pacelc.reservation_data DROP CONSTRAINT regress_fn;
DROP FUNCTION public.regress_rp_ok(bigint);
-- a trigger: the SPI statement fires it
CREATE FUNCTION pg_temp.note_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'trigger saw sku %', NEW.sku; RETURN NEW; END $$;
CREATE TRIGGER regress_note BEFORE INSERT ON pacelc.reservation_data
	FOR EACH ROW EXECUTE FUNCTION pg_temp.note_insert();
SET ROLE regress_pacelc_rp_app;
SELECT pacelc.reserve('rp', 1) IS NOT NULL AS reserved;
RESET ROLE;
DROP TRIGGER regress_note ON pacelc.reservation_data;
SET ROLE regress_pacelc_rp_app;
SELECT pacelc.reserve('rp', 1) IS NOT NULL AS reserved_no_trigger;
RESET ROLE;

-- indexes a superuser adds later (the direct inserts keep the indexes'
-- compiled predicates and expressions per relcache build): written and
-- enforced from the next reserve on, and no longer once dropped
CREATE UNIQUE INDEX regress_rp_once ON pacelc.reservation_data ((qty * 10)) WHERE qty = 7;
CREATE INDEX regress_rp_lower ON pacelc.reservation_data (lower(sku)) WHERE qty > 1;
CREATE INDEX regress_rp_key ON pacelc.idempotency_keys (upper(key)) WHERE key LIKE 'ix-%';
SET ROLE regress_pacelc_rp_app;
SELECT pacelc.reserve('rp', 7) IS NOT NULL AS reserved;
SELECT pg_temp.err($$SELECT pacelc.reserve('rp', 7)$$);
SELECT pacelc.reserve('rp', 2, idempotency_key => 'ix-1') IS NOT NULL AS keyed;
SELECT pacelc.reserve('rp', 2, idempotency_key => 'ix-1') IS NOT NULL AS keyed_again;
RESET ROLE;
CREATE EXTENSION amcheck;
SELECT bt_index_check('pacelc.regress_rp_once', true) AS once_whole,
	   bt_index_check('pacelc.regress_rp_lower', true) AS lower_whole,
	   bt_index_check('pacelc.regress_rp_key', true) AS key_whole;
DROP EXTENSION amcheck;
DROP INDEX pacelc.regress_rp_once, pacelc.regress_rp_lower, pacelc.regress_rp_key;
SET ROLE regress_pacelc_rp_app;
SELECT pacelc.reserve('rp', 7) IS NOT NULL AS reserved_after_drop;
RESET ROLE;

SELECT sku, on_hand, held, available FROM pacelc.stock;
SELECT * FROM pacelc.verify();
DROP EXTENSION pacelc;
DROP ROLE regress_pacelc_rp_app, regress_pacelc_rp_other;
