-- The floor for reserve_hot_ttl_key.sql: the same bare INSERT with an
-- expiry time and an idempotency key filled in (the same row width).
\set k random(1, 9000000000000000)
INSERT INTO bench_bare (sku, qty, expires_at, idempotency_key, owner)
	VALUES ('hot', 1, clock_timestamp() + interval '15 min', 'order-' || :k, 10) RETURNING id;
