-- plain SQL, hot: conditional UPDATE ... WHERE available >= qty, and the
-- order row only when a unit was taken; one statement, one transaction.
WITH taken AS (
	UPDATE bench_stock SET available = available - 1
	 WHERE sku = 'hot' AND available >= 1
	RETURNING sku)
INSERT INTO bench_orders (sku, qty) SELECT sku, 1 FROM taken;
