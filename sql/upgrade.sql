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
SELECT * FROM pacelc.verify();
-- every function pins its search_path
SELECT p.oid::regprocedure FROM pg_proc p
 WHERE p.pronamespace = 'pacelc'::regnamespace
   AND NOT coalesce(p.proconfig::text[] @> '{"search_path=pg_catalog, pacelc"}', false)
 ORDER BY 1;
-- 0.2 -> 0.3 with a hold, a handler queue and messages in place
CREATE FUNCTION public.up_handler(p jsonb) RETURNS void LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE ROLE regress_pacelc_up_owner;
GRANT EXECUTE ON FUNCTION public.up_handler(jsonb) TO regress_pacelc_up_owner;
GRANT USAGE ON SCHEMA pacelc TO regress_pacelc_up_owner;
GRANT EXECUTE ON FUNCTION pacelc.create_queue(text, regprocedure, integer, interval) TO regress_pacelc_up_owner;
-- the 0.3 library refuses 0.2's SECURITY DEFINER functions to ordinary
-- roles until the update (their search_path lets pg_temp shadow names)
SET ROLE regress_pacelc_up_owner;
SELECT pacelc.create_queue('up_h', 'public.up_handler(jsonb)');
RESET ROLE;
SELECT pacelc.create_queue('up_h');
SELECT pacelc.alter_queue('up_h', 'public.up_handler(jsonb)', new_owner => 'regress_pacelc_up_owner');
ALTER EXTENSION pacelc UPDATE TO '0.3';
SELECT extversion FROM pg_extension WHERE extname = 'pacelc';
-- handlers are stored as signatures (pg_upgrade refuses reg* columns)
SELECT name, handler, owner FROM pacelc.queues WHERE name IN ('up_q', 'up_h') ORDER BY 1;
SELECT format_type(atttypid, NULL) FROM pg_attribute
 WHERE attrelid = 'pacelc.queues'::regclass AND attname = 'handler';
-- a hold made before 0.3 has no owner: pacelc_admin (here a superuser) ends it
SELECT owner IS NULL AS no_owner FROM pacelc.reservation_data WHERE id = :r1;
SELECT pacelc.release(:r1);
SELECT sku, on_hand, held, available FROM pacelc.stock WHERE sku = 'up-1';
SELECT pacelc.enqueue('up_q', '{"v": 1}', idempotency_key => 'k1') = :m1 AS same_message;
SELECT * FROM pacelc.verify();
-- 0.3 -> 0.4
ALTER EXTENSION pacelc UPDATE TO '0.4';
SELECT extversion FROM pg_extension WHERE extname = 'pacelc';
SELECT sku, on_hand, held, available FROM pacelc.stock WHERE sku = 'up-1';
SELECT * FROM pacelc.verify();
-- every function pins a search_path that ends in pg_temp
SELECT p.oid::regprocedure FROM pg_proc p
 WHERE p.pronamespace IN ('pacelc'::regnamespace, 'pacelc_private'::regnamespace)
   AND NOT coalesce(p.proconfig::text[] @> '{"search_path=pg_catalog, pacelc, pg_temp"}', false)
 ORDER BY 1;
-- 0.4 -> 0.5
ALTER EXTENSION pacelc UPDATE TO '0.5';
SELECT extversion FROM pg_extension WHERE extname = 'pacelc';
SELECT sku, on_hand, held, available FROM pacelc.stock WHERE sku = 'up-1';
SELECT pacelc.enqueue('up_q', '{"v": 1}', idempotency_key => 'k1') = :m1 AS same_message;
SELECT * FROM pacelc.verify();
-- the message table's indexes: handled messages found by done_at, and
-- idempotency keys indexed only where there is one
SELECT indexrelid::regclass::text AS index, pg_get_indexdef(indexrelid) FROM pg_index
 WHERE indrelid = 'pacelc.messages'::regclass ORDER BY 1;
-- (the worker's statements run with enable_seqscan off)
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) DELETE FROM pacelc.messages m
 WHERE m.state = 'done' AND m.done_at < now() - interval '1 day';
RESET enable_seqscan;
-- every function pins a search_path that ends in pg_temp, except the C
-- entry points that act as the owner (they pin it in C) and the C
-- functions of the CHECK constraints (they resolve no name)
SELECT p.oid::regprocedure, p.proconfig FROM pg_proc p
 WHERE p.pronamespace IN ('pacelc'::regnamespace, 'pacelc_private'::regnamespace)
   AND NOT coalesce(p.proconfig::text[] @> '{"search_path=pg_catalog, pacelc, pg_temp"}', false)
 ORDER BY 1;
SELECT p.oid::regprocedure FROM pg_proc p
 WHERE p.pronamespace IN ('pacelc'::regnamespace, 'pacelc_private'::regnamespace)
   AND p.proconfig IS NULL
   AND NOT (p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'c')
			AND p.prosrc = ANY (pacelc_private.owner_entry_symbols() || pacelc_private.pure_c_symbols()))
 ORDER BY 1;
-- nothing is executable by PUBLIC, and pacelc_private is closed
SELECT p.oid::regprocedure FROM pg_proc p
 WHERE p.pronamespace IN ('pacelc'::regnamespace, 'pacelc_private'::regnamespace)
   AND has_function_privilege('public', p.oid, 'EXECUTE')
 ORDER BY 1;
SELECT has_schema_privilege('public', 'pacelc_private', 'USAGE') AS public_private_usage;
-- 0.5 -> 0.6: the library only (the worker's batches); no SQL object changes
ALTER EXTENSION pacelc UPDATE TO '0.6';
SELECT extversion FROM pg_extension WHERE extname = 'pacelc';
SELECT pacelc.enqueue('up_q', '{"v": 1}', idempotency_key => 'k1') = :m1 AS same_message;
SELECT * FROM pacelc.verify();
-- 0.6 -> 0.7: queue_status counts the worker's open batches as in flight
ALTER EXTENSION pacelc UPDATE TO '0.7';
SELECT extversion FROM pg_extension WHERE extname = 'pacelc';
SELECT queue, due, in_flight, depth FROM pacelc.queue_status ORDER BY queue;
-- every function pinned, and nothing executable by PUBLIC but the view's
-- reader of shared memory, in the closed schema
SELECT p.oid::regprocedure FROM pg_proc p
 WHERE p.pronamespace IN ('pacelc'::regnamespace, 'pacelc_private'::regnamespace)
   AND p.proconfig IS NULL
   AND NOT (p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'c')
			AND p.prosrc = ANY (pacelc_private.owner_entry_symbols() || pacelc_private.pure_c_symbols()))
 ORDER BY 1;
SELECT p.oid::regprocedure FROM pg_proc p
 WHERE p.pronamespace IN ('pacelc'::regnamespace, 'pacelc_private'::regnamespace)
   AND has_function_privilege('public', p.oid, 'EXECUTE')
 ORDER BY 1;
SELECT has_schema_privilege('public', 'pacelc_private', 'USAGE') AS public_private_usage;
\getenv abs_srcdir PG_ABS_SRCDIR
\set filename :abs_srcdir '/sql/include/err.sql'
\i :filename
CREATE ROLE regress_pacelc_up_app IN ROLE pacelc_app;
SET ROLE regress_pacelc_up_app;
SELECT count(*) AS app_sees_no_queue FROM pacelc.queue_status;
SELECT pg_temp.err($$SELECT * FROM pacelc_private.worker_batches()$$);
RESET ROLE;
DROP ROLE regress_pacelc_up_app;
SELECT pacelc.drop_queue('up_h');
DROP FUNCTION public.up_handler(jsonb);
DROP OWNED BY regress_pacelc_up_owner;
DROP ROLE regress_pacelc_up_owner;
DROP EXTENSION pacelc;
-- a fresh install is 0.7 (0.1 followed by the update scripts)
CREATE EXTENSION pacelc;
SELECT extversion FROM pg_extension WHERE extname = 'pacelc';
DROP EXTENSION pacelc;
