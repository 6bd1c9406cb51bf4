-- pacelc, hot, reserve alone: every client holds one unit of the one SKU
-- 'hot' (no ttl, no idempotency key), autocommit: one transaction per hold.
SELECT pacelc.reserve('hot', 1);
