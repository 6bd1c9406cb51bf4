-- The floor of a durable reserve: a bare one-row INSERT, autocommit, into a
-- table with the columns of pacelc.reservation_data and only a primary key
-- (bench_bare, setup.sql), filled as reserve_hot.sql fills its row.
INSERT INTO bench_bare (sku, qty, owner) VALUES ('hot', 1, 10) RETURNING id;
