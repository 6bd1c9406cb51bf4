-- pacelc, hot, reserve alone with a ttl and an idempotency key (a new key
-- each time: a 64-bit random number, so a repeat is a few-in-a-million
-- chance and then an idempotent answer, not an error).
\set k random(1, 9000000000000000)
SELECT pacelc.reserve('hot', 1, ttl => interval '15 min', idempotency_key => 'order-' || :k);
