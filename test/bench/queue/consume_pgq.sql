-- The PgQ consumer round: tick (what pgqd would do; ticker_max_lag = 0, so
-- any new event makes a tick), then take the next batch, run the "handler"
-- (one small insert per event) and finish the batch; sleep :poll_ms when
-- there was nothing.
SELECT pgq.ticker('bench');
SELECT bench_pgq_consume() AS n
\gset
\if :n = 0
\sleep :poll_ms ms
\endif
