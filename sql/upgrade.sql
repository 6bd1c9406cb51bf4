-- Upgrade path: a database created with 0.1 keeps its data through
-- ALTER EXTENSION pacelc UPDATE, and ends with the objects of a fresh install.
CREATE EXTENSION pacelc VERSION '0.1';
\set VERBOSITY terse
SELECT pacelc.set_stock('up-1', 10);
SELECT pacelc.reserve('up-1', 3) AS r1 \gset
SELECT pacelc.create_queue('up_q');
SELECT pacelc.enqueue('up_q', '{"v": 1}', idempotency_key => 'k1') AS m1 \gset
SELECT l.lanname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.oid = 'pacelc.enqueue(text, jsonb, interval, text)'::regprocedure;
ALTER EXTENSION pacelc UPDATE TO '0.2';
SELECT extversion FROM pg_extension WHERE extname = 'pacelc';
SELECT l.lanname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.oid = 'pacelc.enqueue(text, jsonb, interval, text)'::regprocedure;
-- the data is still there and the new enqueue honours the old keys
SELECT sku, on_hand, held, available FROM pacelc.stock WHERE sku = 'up-1';
SELECT pacelc.enqueue('up_q', '{"v": 1}', idempotency_key => 'k1') = :m1 AS same_message;
SELECT pacelc.enqueue('up_q', '{"v": 2}') > :m1 AS new_message;
SELECT queue, depth FROM pacelc.queue_status WHERE queue = 'up_q';
SELECT pacelc.release(:r1);
SELECT * FROM pacelc.verify();
-- every function pins its search_path
SELECT p.oid::regprocedure FROM pg_proc p
 WHERE p.pronamespace = 'pacelc'::regnamespace
   AND NOT coalesce(p.proconfig::text[] @> '{"search_path=pg_catalog, pacelc"}', false)
 ORDER BY 1;
-- nothing is executable by PUBLIC
SELECT p.oid::regprocedure FROM pg_proc p
 WHERE p.pronamespace = 'pacelc'::regnamespace
   AND has_function_privilege('public', p.oid, 'EXECUTE')
 ORDER BY 1;
DROP EXTENSION pacelc;
-- a fresh install is 0.3 (0.1 followed by the update scripts)
CREATE EXTENSION pacelc;
SELECT extversion FROM pg_extension WHERE extname = 'pacelc';
DROP EXTENSION pacelc;
