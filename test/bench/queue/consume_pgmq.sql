-- One pgmq consumer round: read up to :batch messages, insert, delete them,
-- all in one transaction; sleep :poll_ms when the queue was empty.
SELECT bench_pgmq_consume(:batch) AS n
\gset
\if :n = 0
\sleep :poll_ms ms
\endif
