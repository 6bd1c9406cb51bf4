#!/usr/bin/env bash
# Measures the cost of rebuilding escrow counters after a restart for a
# large catalogue: N SKUs (default 1,000,000) with reservations, restart,
# then the latency of the first reserve() of a SKU (one index lookup) and
# of touching every SKU once.  Usage (root or postgres):
#   bash test/bench/catalogue_bench.sh [N]
set -euo pipefail
N=${1:-1000000}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
if [ "$(id -u)" = 0 ]; then
	. "$ROOT/test/bench/lib.sh"
	bench_as_postgres "$0" "" "$@"
fi
BIN=$("$PG_CONFIG" --bindir)
DIR=$(mktemp -d /tmp/pacelc-catalogue.XXXXXX)
trap '"$BIN/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
"$BIN/initdb" -D "$DIR/data" -A trust >/dev/null
cat >>"$DIR/data/postgresql.conf" <<CONF
shared_preload_libraries = 'pacelc'
pacelc.max_skus = $((N + 1000))
listen_addresses = ''
unix_socket_directories = '$DIR'
port = 55790
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
