#!/usr/bin/env bash
# Measures the cost of rebuilding escrow counters after a restart for a
# large catalogue: N SKUs (default 1,000,000) with reservations, restart,
# then the latency of the first reserve() of a SKU (one index lookup) and
# of touching every SKU once.  Usage (root or postgres):
#   bash test/bench/catalogue_bench.sh [N]
. "$(dirname "$0")/lib.sh"
bench_start "" "$@"
N=${1:-1000000}
bench_dir catalogue
bench_initdb data 55790 <<CONF
shared_preload_libraries = 'pacelc'
pacelc.max_skus = $((N + 1000))
shared_buffers = 512MB
CONF
"$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w start >/dev/null
PSQL=("$BIN/psql" -X -q -At -h "$DIR" -p 55790 -d postgres)
"${PSQL[@]}" -c "CREATE EXTENSION pacelc"
echo "loading $N SKUs and $((N / 10)) reservations ..."
"${PSQL[@]}" -c "INSERT INTO pacelc.skus (sku, on_hand_base) SELECT 'sku-' || i, 100 FROM generate_series(1, $N) i"
"${PSQL[@]}" -c "INSERT INTO pacelc.reservation_data (sku, qty) SELECT 'sku-' || (i * 10), 3 FROM generate_series(1, $N / 10) i"
"${PSQL[@]}" -c "VACUUM ANALYZE"
"$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w restart >/dev/null
echo "after restart:"
"${PSQL[@]}" <<SQL
\timing on
SELECT 'first reserve of one SKU (rebuilds its counter)', pacelc.reserve('sku-500000', 1) > 0;
SELECT 'second reserve of that SKU', pacelc.reserve('sku-500000', 1) > 0;
SELECT 'available() of a SKU with holds', pacelc.available('sku-$((N / 2))');
SELECT 'touch every SKU once', count(pacelc.available(sku)) FROM pacelc.skus;
SELECT 'touch every SKU again', count(pacelc.available(sku)) FROM pacelc.skus;
SQL
"${PSQL[@]}" -c "SELECT 'verify() problems', count(*) FROM pacelc.verify()"
