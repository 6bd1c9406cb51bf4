-- plain SQL, hot: the usual strict design.  Lock the SKU row, check, take the
-- unit, record the order, all in one transaction.
BEGIN;
SELECT available FROM bench_stock WHERE sku = 'hot' FOR UPDATE \gset
\if :available >= 1
UPDATE bench_stock SET available = available - 1 WHERE sku = 'hot';
INSERT INTO bench_orders (sku, qty) VALUES ('hot', 1);
\endif
END;
