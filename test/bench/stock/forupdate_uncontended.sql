-- plain SQL, uncontended: forupdate_hot.sql on each client's own SKU row
-- (shows what the hot row lock costs the strict design).
BEGIN;
SELECT available FROM bench_stock WHERE sku = 'own-' || :client_id FOR UPDATE \gset
\if :available >= 1
UPDATE bench_stock SET available = available - 1 WHERE sku = 'own-' || :client_id;
INSERT INTO bench_orders (sku, qty) VALUES ('own-' || :client_id, 1);
\endif
END;
