-- pacelc, hot: every client reserves on the one SKU 'hot', then confirms in
-- a second transaction.
SELECT pacelc.reserve('hot', 1) AS id \gset
SELECT pacelc.confirm(:id);
