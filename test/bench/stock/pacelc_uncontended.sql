-- pacelc, uncontended: each client reserves on its own SKU, then confirms in
-- a second transaction (the same-work baseline for pacelc_hot.sql).
SELECT pacelc.reserve('own-' || :client_id, 1) AS id \gset
SELECT pacelc.confirm(:id);
