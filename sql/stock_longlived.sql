-- Stock in long-lived clusters (issue 13): near the bigint limit, available()
-- inside a transaction, a SKU that was never created, verify(), folding.
CREATE EXTENSION pacelc;
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\set filename :abs_srcdir '/sql/include/err.sql'
\i :filename

-- Near the bigint limit, unfolded confirmed units must not make a restock
-- or a set_stock overflow: the SKU is folded first, then the change is
-- judged on on_hand alone.
SELECT pacelc.set_stock('big', 9223372036854775807 - 10);
SELECT pacelc.confirm(pacelc.reserve('big', 10));
SELECT on_hand, held FROM pacelc.stock WHERE sku = 'big';
SELECT pacelc.add_stock('big', 15);
SELECT on_hand, held, available FROM pacelc.stock WHERE sku = 'big';
SELECT pacelc.available('big');
SELECT pacelc.confirm(pacelc.reserve('big', 7));
SELECT pacelc.set_stock('big', 9223372036854775807);
SELECT on_hand, held, available FROM pacelc.stock WHERE sku = 'big';
SELECT on_hand_base FROM pacelc.skus WHERE sku = 'big';
SELECT count(*) FILTER (WHERE NOT folded) AS unfolded, count(*) AS confirmed
  FROM pacelc.reservation_data WHERE sku = 'big' AND state = 'confirmed';
-- a real overflow is still refused
SELECT pg_temp.err($$SELECT pacelc.add_stock('big', 1)$$);
SELECT * FROM pacelc.verify();

-- available() inside a transaction says what reserve() would do
BEGIN;
SELECT pacelc.set_stock('x', 5);
SELECT pacelc.available('x');
SELECT pacelc.reserve('x', 5) IS NOT NULL AS got_five;
SELECT pacelc.available('x');
SELECT pg_temp.err($$SELECT pacelc.reserve('x', 1)$$);
COMMIT;
SELECT pacelc.available('x');
SELECT pacelc.try_reserve('x', 1) IS NULL AS sold_out;
BEGIN;
SELECT pacelc.add_stock('x', 3);
SELECT pacelc.available('x');
SAVEPOINT s;
SELECT pacelc.reserve('x', 2) IS NOT NULL AS got_two;
SELECT pacelc.available('x');
ROLLBACK TO SAVEPOINT s;
SELECT pacelc.available('x');
ROLLBACK;
SELECT pacelc.available('x');
-- a release in the transaction: the units are its own at once
SELECT pacelc.set_stock('y', 2);
SELECT pacelc.reserve('y', 2) AS y1 \gset
BEGIN;
SELECT pacelc.available('y');
SELECT pacelc.release(:y1);
SELECT pacelc.available('y');
SELECT pacelc.reserve('y', 2) IS NOT NULL AS got_released;
SELECT pacelc.available('y');
COMMIT;
SELECT pacelc.available('y');

-- a SKU whose creating transaction rolled back is unknown again, in this
-- session and in a savepoint, and can be created afresh
BEGIN;
SELECT pacelc.set_stock('gone', 4);
ROLLBACK;
SELECT pg_temp.err($$SELECT pacelc.available('gone')$$);
SELECT pg_temp.err($$SELECT pacelc.reserve('gone')$$);
BEGIN;
SAVEPOINT s;
SELECT pacelc.set_stock('gone', 4);
ROLLBACK TO SAVEPOINT s;
SELECT pg_temp.err($$SELECT pacelc.available('gone')$$);
COMMIT;
SELECT pacelc.set_stock('gone', 4);
SELECT pacelc.available('gone');

-- nested savepoints: a released savepoint's takes belong to its parent, a
-- rolled-back one gives back its own and its released children's
SELECT pacelc.set_stock('nest', 10);
BEGIN;
SELECT pacelc.reserve('nest', 1) IS NOT NULL AS got;
SAVEPOINT a;
SELECT pacelc.reserve('nest', 2) IS NOT NULL AS got;
SAVEPOINT b;
SELECT pacelc.reserve('nest', 3) IS NOT NULL AS got;
RELEASE SAVEPOINT b;
SAVEPOINT c;
SELECT pacelc.add_stock('nest', 5);
SELECT pacelc.reserve('nest', 6) IS NOT NULL AS got;
SELECT pacelc.available('nest');
ROLLBACK TO SAVEPOINT c;
SELECT pacelc.available('nest');
ROLLBACK TO SAVEPOINT a;
SELECT pacelc.available('nest');
SAVEPOINT d;
SELECT pacelc.add_stock('nest', 2);
RELEASE SAVEPOINT d;
SELECT pacelc.reserve('nest', 11) IS NOT NULL AS got;
SELECT pacelc.available('nest');
COMMIT;
SELECT on_hand, held, available, pacelc.available(sku) FROM pacelc.stock WHERE sku = 'nest';
-- many subtransactions that fail after reserving hold nothing afterwards
SELECT pacelc.set_stock('loop', 3);
DO $$
BEGIN
	FOR i IN 1..500 LOOP
		BEGIN
			PERFORM pacelc.reserve('loop', 1);
			PERFORM pacelc.add_stock('loop', 1);
			RAISE EXCEPTION 'payment failed';
		EXCEPTION WHEN OTHERS THEN
			IF SQLERRM <> 'payment failed' THEN
				RAISE;
			END IF;
		END;
	END LOOP;
END $$;
SELECT on_hand, held, available, pacelc.available(sku) FROM pacelc.stock WHERE sku = 'loop';

-- the escrow audit finds a real excess (units written off behind pacelc's
-- back, in the table directly) and nothing otherwise
SELECT pacelc.set_stock('audit', 3);
SELECT pacelc.reserve('audit', 2) AS a1 \gset
SELECT * FROM pacelc.verify();
UPDATE pacelc.skus SET on_hand_base = on_hand_base - 2 WHERE sku = 'audit';
SELECT * FROM pacelc.verify();
UPDATE pacelc.skus SET on_hand_base = on_hand_base + 2 WHERE sku = 'audit';
SELECT * FROM pacelc.verify();

-- fold_confirmed: every SKU with confirmed units, in order, none twice
SELECT pacelc.confirm(pacelc.reserve('audit', 1));
SELECT pacelc.confirm(pacelc.reserve('gone', 1));
SELECT pacelc.fold_confirmed();
SELECT pacelc.fold_confirmed();
SELECT count(*) FROM pacelc.reservation_data WHERE state = 'confirmed' AND NOT folded;
SELECT sku, on_hand, held, available FROM pacelc.stock ORDER BY sku;
SELECT * FROM pacelc.verify();

-- the new function pins its search_path with pg_temp last
SELECT p.oid::regprocedure, p.proconfig FROM pg_proc p
 WHERE p.pronamespace = 'pacelc'::regnamespace
   AND p.proname IN ('verify', 'fold_confirmed', '_escrow_excess')
 ORDER BY 1;
DROP EXTENSION pacelc;
