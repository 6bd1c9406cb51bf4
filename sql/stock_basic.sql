-- Stock reservation: every function, the views and the error paths.
CREATE EXTENSION pacelc;
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\set filename :abs_srcdir '/sql/include/err.sql'
\i :filename

-- create, restock, write off
SELECT pacelc.set_stock('tee', 10);
SELECT pacelc.add_stock('tee', 5);
SELECT pacelc.add_stock('tee', -3);
SELECT pacelc.add_stock('tee', 0);
SELECT * FROM pacelc.stock;
SELECT pacelc.available('tee');

-- reserve, confirm, release
SELECT pacelc.reserve('tee', 2) AS r1 \gset
SELECT pacelc.reserve('tee') AS r2 \gset
SELECT pacelc.available('tee');
SELECT sku, on_hand, held, available FROM pacelc.stock;
SELECT pacelc.confirm(:r1);
SELECT sku, on_hand, held, available FROM pacelc.stock;
SELECT pacelc.release(:r2);
SELECT sku, on_hand, held, available FROM pacelc.stock;
SELECT pacelc.available('tee');
SELECT id = :r1 AS is_r1, sku, qty, state, expires_at IS NULL AS no_ttl
  FROM pacelc.reservations ORDER BY id;

-- insufficient stock: PC001, and try_reserve returns NULL
SELECT pg_temp.err($$SELECT pacelc.reserve('tee', 11)$$);
SELECT pacelc.try_reserve('tee', 11) IS NULL AS got_null;
SELECT pacelc.try_reserve('tee', 10) IS NOT NULL AS got_all;
SELECT pacelc.available('tee');
SELECT pg_temp.err($$SELECT pacelc.reserve('tee')$$);

-- unknown SKU: PC002 everywhere
SELECT pg_temp.err($$SELECT pacelc.reserve('nope')$$);
SELECT pg_temp.err($$SELECT pacelc.try_reserve('nope')$$);
SELECT pg_temp.err($$SELECT pacelc.add_stock('nope', 1)$$);
SELECT pg_temp.err($$SELECT pacelc.available('nope')$$);
SELECT pg_temp.err($$SELECT pacelc.reserve_all('{tee,nope}', '{1,1}')$$);

-- confirm / release of what is not held: PC003
SELECT pg_temp.err(format('SELECT pacelc.confirm(%s)', :r1));
SELECT pg_temp.err(format('SELECT pacelc.release(%s)', :r1));
SELECT pg_temp.err(format('SELECT pacelc.confirm(%s)', :r2));
SELECT pg_temp.err(format('SELECT pacelc.release(%s)', :r2));
SELECT pg_temp.err($$SELECT pacelc.confirm(999999)$$);
SELECT pg_temp.err($$SELECT pacelc.release(-1)$$);

-- NULLs: 22004
SELECT pg_temp.err($$SELECT pacelc.set_stock(NULL, 1)$$);
SELECT pg_temp.err($$SELECT pacelc.set_stock('x', NULL)$$);
SELECT pg_temp.err($$SELECT pacelc.add_stock(NULL, 1)$$);
SELECT pg_temp.err($$SELECT pacelc.add_stock('tee', NULL)$$);
SELECT pg_temp.err($$SELECT pacelc.reserve(NULL)$$);
SELECT pg_temp.err($$SELECT pacelc.reserve('tee', NULL)$$);
SELECT pg_temp.err($$SELECT pacelc.try_reserve(NULL)$$);
SELECT pg_temp.err($$SELECT pacelc.reserve_all(NULL, '{1}')$$);
SELECT pg_temp.err($$SELECT pacelc.reserve_all('{tee}', NULL)$$);
SELECT pg_temp.err($$SELECT pacelc.reserve_all('{tee,NULL}', '{1,1}')$$);
SELECT pg_temp.err($$SELECT pacelc.reserve_all('{tee}', '{NULL}')$$);
SELECT pg_temp.err($$SELECT pacelc.confirm(NULL)$$);
SELECT pg_temp.err($$SELECT pacelc.release(NULL)$$);
SELECT pg_temp.err($$SELECT pacelc.available(NULL)$$);
SELECT pg_temp.err($$SELECT pacelc.expire_holds(NULL)$$);

-- invalid values: 22023
SELECT pg_temp.err($$SELECT pacelc.reserve('tee', 0)$$);
SELECT pg_temp.err($$SELECT pacelc.reserve('tee', -5)$$);
SELECT pg_temp.err($$SELECT pacelc.reserve('tee', 1, '0 s')$$);
SELECT pg_temp.err($$SELECT pacelc.reserve('tee', 1, '-1 min')$$);
SELECT pg_temp.err($$SELECT pacelc.reserve('tee', 1, NULL, '')$$);
SELECT pg_temp.err(format('SELECT pacelc.reserve(%L, 1, NULL, %L)', 'tee', repeat('k', 256)));
SELECT pg_temp.err($$SELECT pacelc.set_stock('', 1)$$);
SELECT pg_temp.err(format('SELECT pacelc.set_stock(%L, 1)', repeat('x', 64)));
SELECT pg_temp.err(format('SELECT pacelc.set_stock(%L, 1)', repeat('x', 63)));
SELECT pg_temp.err($$SELECT pacelc.set_stock('neg', -1)$$);
SELECT pg_temp.err($$SELECT pacelc.reserve_all('{}', '{}')$$);
SELECT pg_temp.err($$SELECT pacelc.reserve_all('{tee,tee}', '{1,1}')$$);
SELECT pg_temp.err($$SELECT pacelc.reserve_all('{tee}', '{1,1}')$$);
SELECT pg_temp.err($$SELECT pacelc.reserve_all('{{tee}}', '{{1}}')$$);
SELECT pg_temp.err($$SELECT pacelc.reserve_all('{tee}', '{0}')$$);
SELECT pg_temp.err($$SELECT pacelc.expire_holds(0)$$);
SELECT pg_temp.err($$SELECT pacelc.fold_confirmed(0)$$);

-- bigint limits: 22003, and no write-off below zero or below held (PC001)
SELECT pacelc.set_stock('big', 9223372036854775807);
SELECT pg_temp.err($$SELECT pacelc.add_stock('big', 1)$$);
SELECT pacelc.reserve('big', 9223372036854775807) IS NOT NULL AS reserved_max;
SELECT pg_temp.err($$SELECT pacelc.reserve('big', 1)$$);
SELECT pacelc.set_stock('small', 2);
SELECT pg_temp.err($$SELECT pacelc.add_stock('small', -3)$$);
SELECT pg_temp.err($$SELECT pacelc.add_stock('small', -9223372036854775807)$$);
SELECT pacelc.reserve('small', 2) AS small_r \gset
SELECT pg_temp.err($$SELECT pacelc.add_stock('small', -1)$$);
SELECT pg_temp.err($$SELECT pacelc.set_stock('small', 1)$$);
SELECT pacelc.set_stock('small', 2);
SELECT pacelc.release(:small_r);
SELECT pacelc.set_stock('small', 0);
SELECT sku, on_hand, held, available FROM pacelc.stock WHERE sku = 'small';

-- set_stock after confirms keeps counting physical units.  The worker folds
-- committed confirms on its own schedule; it never sees uncommitted ones, so
-- each confirm below and what must find it unfolded share a transaction, and
-- fold_confirmed() is called first for what earlier parts confirmed.
-- (the worker may be folding one right now: fold_confirmed() skips a SKU
-- whose row is locked, so repeat until nothing is left)
DO $$
BEGIN
	FOR i IN 1..200 LOOP
		PERFORM pacelc.fold_confirmed();
		EXIT WHEN NOT EXISTS (SELECT FROM pacelc.reservation_data
							   WHERE state = 'confirmed' AND NOT folded);
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;
SELECT count(*) AS unfolded FROM pacelc.reservation_data
 WHERE state = 'confirmed' AND NOT folded;
SELECT pacelc.set_stock('mug', 5);
BEGIN;
SELECT pacelc.confirm(pacelc.reserve('mug', 2));
SELECT sku, on_hand, held, available FROM pacelc.stock WHERE sku = 'mug';
SELECT pacelc.set_stock('mug', 10);
SELECT on_hand_base FROM pacelc.skus WHERE sku = 'mug';
SELECT pacelc.fold_confirmed();
SELECT on_hand_base FROM pacelc.skus WHERE sku = 'mug';
SELECT sku, on_hand, held, available FROM pacelc.stock WHERE sku = 'mug';
COMMIT;
SELECT pacelc.available('mug');
SELECT sku, on_hand, held, available FROM pacelc.stock WHERE sku = 'mug';
BEGIN;
SELECT pacelc.confirm(pacelc.reserve('mug', 4));
SELECT pacelc.add_stock('mug', 1);
SELECT sku, on_hand, held, available FROM pacelc.stock WHERE sku = 'mug';
SELECT on_hand_base FROM pacelc.skus WHERE sku = 'mug';
COMMIT;
SELECT pacelc.available('mug');

-- a cart: all or nothing
SELECT pacelc.set_stock('cap', 3);
SELECT pacelc.set_stock('sock', 1);
SELECT cardinality(pacelc.reserve_all('{cap,sock}', '{2,1}')) AS lines;
SELECT pg_temp.err($$SELECT pacelc.reserve_all('{cap,sock}', '{1,1}')$$);
SELECT pacelc.available('cap'), pacelc.available('sock');

-- idempotency keys: same key, same answer, nothing more held
SELECT pacelc.set_stock('hat', 20);
SELECT pacelc.reserve('hat', 2, idempotency_key => 'order-1') AS k1 \gset
SELECT pacelc.reserve('hat', 2, idempotency_key => 'order-1') = :k1 AS same_id;
SELECT pacelc.try_reserve('hat', 2, idempotency_key => 'order-1') = :k1 AS same_id;
SELECT pacelc.available('hat');
SELECT pg_temp.err($$SELECT pacelc.reserve('hat', 3, idempotency_key => 'order-1')$$);
SELECT pg_temp.err($$SELECT pacelc.reserve('cap', 2, idempotency_key => 'order-1')$$);
SELECT pacelc.reserve_all('{hat,cap}', '{1,1}', idempotency_key => 'cart-1') AS c1 \gset
SELECT pacelc.reserve_all('{hat,cap}', '{1,1}', idempotency_key => 'cart-1') = :'c1' AS same_ids;
SELECT pacelc.available('hat'), pacelc.available('cap');
SELECT idempotency_key, count(*) FROM pacelc.reservations
 WHERE idempotency_key IS NOT NULL GROUP BY 1 ORDER BY 1;

-- a rolled-back reserve holds nothing; so does a rolled-back savepoint
BEGIN;
SELECT pacelc.reserve('hat', 1) IS NOT NULL;
SELECT pacelc.available('hat');
ROLLBACK;
SELECT pacelc.available('hat');
BEGIN;
SELECT pacelc.reserve('hat', 1) IS NOT NULL;
SAVEPOINT s1;
SELECT pacelc.reserve('hat', 1) IS NOT NULL;
SAVEPOINT s2;
SELECT pacelc.reserve('hat', 1) IS NOT NULL;
RELEASE SAVEPOINT s2;
SELECT pacelc.available('hat');
ROLLBACK TO SAVEPOINT s1;
SELECT pacelc.available('hat');
COMMIT;
SELECT pacelc.available('hat');
SELECT held FROM pacelc.stock WHERE sku = 'hat';
-- an error inside a PL/pgSQL exception block is a subtransaction too
DO $$
BEGIN
	PERFORM pacelc.reserve('hat', 1);
	RAISE EXCEPTION 'payment failed';
EXCEPTION WHEN OTHERS THEN
	RAISE NOTICE 'caught: %', SQLERRM;
END $$;
SELECT pacelc.available('hat');

-- a release is given back to others only at commit (this transaction may
-- reserve the units at once, and available() says so)
SELECT pacelc.reserve('hat', 1) AS h1 \gset
BEGIN;
SELECT pacelc.release(:h1);
SELECT pacelc.available('hat');
ROLLBACK;
SELECT pacelc.available('hat');
SELECT state FROM pacelc.reservations WHERE id = :h1;

-- restock becomes available to others at commit, a write-off at once
BEGIN;
SELECT pacelc.add_stock('hat', 10);
SELECT pacelc.available('hat');
ROLLBACK;
SELECT pacelc.available('hat');
BEGIN;
SELECT pacelc.add_stock('hat', -1);
SELECT pacelc.available('hat');
ROLLBACK;
SELECT pacelc.available('hat');

-- a prepared reserve keeps its unit until ROLLBACK PREPARED gives it back
BEGIN;
SELECT pacelc.reserve('hat', 1) IS NOT NULL;
PREPARE TRANSACTION 'p1';
SELECT pacelc.available('hat');
SELECT count(*) FROM pg_prepared_xacts;
ROLLBACK PREPARED 'p1';
SELECT pacelc.available('hat');
SELECT count(*) FROM pg_prepared_xacts;

-- ttl: confirm after expiry is refused; expire_holds returns the units
SELECT pacelc.set_stock('ttl', 2);
-- (the hold is looked at in its own transaction: once committed, the worker
-- may expire it 50 ms later, and a busy machine can take that long between
-- two statements)
BEGIN;
SELECT pacelc.reserve('ttl', 2, ttl => '50 ms') AS t1 \gset
SELECT pacelc.available('ttl');
SELECT pacelc.next_expiry() IS NOT NULL AS has_expiry;
COMMIT;
SELECT pg_sleep(0.1);
-- "has expired" or, if the worker was faster, "is not held": PC003 either way
SELECT left(pg_temp.err(format('SELECT pacelc.confirm(%s)', :t1)), 5) AS sqlstate;
SELECT pacelc.expire_holds() >= 0 AS expired_now_or_by_the_worker;
SELECT pacelc.available('ttl');
SELECT state FROM pacelc.reservations WHERE id = :t1;
SELECT pg_temp.err(format('SELECT pacelc.confirm(%s)', :t1));
SELECT pacelc.expire_holds() >= 0 AS expired_now_or_by_the_worker;

-- read-only transactions get the ordinary read-only error
BEGIN READ ONLY;
SELECT pg_temp.err($$SELECT pacelc.reserve('hat')$$);
SELECT pg_temp.err($$SELECT pacelc.set_stock('hat', 1)$$);
SELECT pacelc.available('hat');
COMMIT;

-- a transaction may reserve what it created, restocked or released itself
BEGIN;
SELECT pacelc.set_stock('fresh', 3);
SELECT pacelc.reserve('fresh', 2) IS NOT NULL AS got;
SELECT pg_temp.err($$SELECT pacelc.reserve('fresh', 2)$$);
ROLLBACK;
SELECT pg_temp.err($$SELECT pacelc.reserve('fresh')$$);
BEGIN;
SELECT pacelc.set_stock('fresh', 3);
SELECT pacelc.reserve('fresh', 2) AS f1 \gset
SAVEPOINT a;
SELECT pacelc.reserve('fresh', 1) IS NOT NULL AS got;
ROLLBACK TO SAVEPOINT a;
SELECT pacelc.release(:f1);
SELECT pacelc.reserve('fresh', 3) IS NOT NULL AS got_released_units;
SELECT pacelc.add_stock('fresh', 2);
SELECT pacelc.reserve('fresh', 2) IS NOT NULL AS got_restocked_units;
SELECT pacelc.available('fresh');
COMMIT;
SELECT sku, on_hand, held, available, pacelc.available(sku) AS escrow
  FROM pacelc.stock WHERE sku = 'fresh';

-- every isolation level
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT pacelc.confirm(pacelc.reserve('hat', 1));
SELECT pacelc.release(pacelc.reserve('hat', 1));
SELECT pacelc.add_stock('hat', 1);
COMMIT;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT pacelc.confirm(pacelc.reserve('hat', 1));
SELECT pacelc.release(id) FROM unnest(pacelc.reserve_all('{hat,mug}', '{1,1}')) id;
SELECT pacelc.set_stock('mug', 20);
COMMIT;
SELECT sku, on_hand, held, available, pacelc.available(sku) AS escrow
  FROM pacelc.stock WHERE sku IN ('hat', 'mug') ORDER BY sku;

-- everything adds up
SELECT * FROM pacelc.verify();
SELECT count(*) AS mismatched FROM pacelc.stock s
 WHERE s.available <> pacelc.available(s.sku);

-- privileges: an application role with the documented grants
-- roles are cluster-wide: leftovers of an interrupted run go first
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_pacelc_shop_app, regress_pacelc_outsider;
RESET client_min_messages;
CREATE ROLE regress_pacelc_shop_app LOGIN;
GRANT USAGE ON SCHEMA pacelc TO regress_pacelc_shop_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pacelc TO regress_pacelc_shop_app;
GRANT SELECT ON pacelc.stock, pacelc.reservations TO regress_pacelc_shop_app;
SET ROLE regress_pacelc_shop_app;
SELECT pacelc.reserve('hat') IS NOT NULL AS app_can_reserve;
SELECT count(*) > 0 AS app_can_read FROM pacelc.stock;
SELECT pg_temp.err($$INSERT INTO pacelc.skus VALUES ('cheat', 100)$$);
SELECT pg_temp.err($$UPDATE pacelc.reservation_data SET state = 'released'$$);
RESET ROLE;
CREATE ROLE regress_pacelc_outsider LOGIN;
SET ROLE regress_pacelc_outsider;
SELECT pg_temp.err($$SELECT pacelc.reserve('hat')$$);
RESET ROLE;
SELECT * FROM pacelc.verify();

-- a transaction that drops the extension cannot be prepared
BEGIN;
DROP EXTENSION pacelc;
PREPARE TRANSACTION 'p_drop';
SELECT pacelc.available('hat') >= 0 AS still_there;

-- DROP and CREATE again in the same session start from scratch
DROP EXTENSION pacelc;
CREATE EXTENSION pacelc;
SELECT pg_temp.err($$SELECT pacelc.reserve('hat')$$);
SELECT pacelc.set_stock('hat', 1);
SELECT pacelc.available('hat');
DROP EXTENSION pacelc;
DROP OWNED BY regress_pacelc_shop_app, regress_pacelc_outsider;
DROP ROLE regress_pacelc_shop_app, regress_pacelc_outsider;
