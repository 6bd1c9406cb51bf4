#!/usr/bin/env bash
# Scaling out with Citus: the same load on a single node, through the Citus
# coordinator, and routed by the application straight to the workers, side
# by side in one run (rounds interleaved, so that the machine's noise hits
# every contender alike).  Starts its own throw-away servers on 127.0.0.1:
#
#   single      one PostgreSQL with pacelc (shared_preload_libraries = 'pacelc')
#   coordinator a Citus coordinator and two workers ('citus,pacelc'), set up
#               with pacelc.citus_setup(); the clients talk to the coordinator,
#               which delegates every call to the SKU's worker
#   routed      the same two workers, each client connected to one worker and
#               calling only for SKUs that worker owns (the application knows
#               the placement, e.g. from get_shard_id_for_distribution_column)
#
# Workloads (pgbench, prepared protocol, synchronous_commit on):
#   reserve     SELECT pacelc.reserve(sku, 1) on 64 SKUs, half on each worker
#   cart        a cart of 2 lines, one SKU on each worker: reserve_all on the
#               single node, citus_reserve_all (two-phase commit) through the
#               coordinator; the routed application has no atomic cart across
#               workers (n/a)
# After the runs it checks verify() on every node.
#
# Usage, as root (builds Citus into the Debian root of that version when
# missing, installs pacelc there, runs as user postgres inside it):
#   bash test/bench/citus_bench.sh               # PostgreSQL 17, 16 clients, 3 rounds of 8 s
#   bash test/bench/citus_bench.sh --pg 18
#   bash test/bench/citus_bench.sh --quick       # 1 round of 4 s (a smoke test)
# Environment: CLIENTS=16, DURATION=8 (seconds per run), ROUNDS=3,
#   PORT=55640 (uses PORT .. PORT+3), PACELC_ROOTS (see test/pg-root.sh).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CLIENTS=${CLIENTS:-16}
DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-55640}
v=17
inside=0
while [ $# -gt 0 ]; do
	case "$1" in
		--pg) v=$2; shift 2 ;;
		--inside) inside=1; shift ;;
		--quick) ROUNDS=1; DURATION=4; shift ;;
		-h|--help) sed -n '2,29p' "$0"; exit 0 ;;
		*) echo "unknown argument: $1" >&2; exit 2 ;;
	esac
done

# ---------------------------------------------------------------------------
# As root: the root, Citus, pacelc; then this script inside the root.
if [ $inside = 0 ]; then
	[ "$(id -u)" = 0 ] || { echo "run as root (it builds into the Debian root)" >&2; exit 1; }
	lock=$(bash "$ROOT/test/pg-root.sh" lockfile "$v")
	exec 9>"$lock"
	flock -w 3600 9 || { echo "could not lock $lock" >&2; exit 1; }
	r=$(bash "$ROOT/test/pg-root.sh" ensure "$v")
	bash "$ROOT/test/citus-build.sh" "$v"
	src=$(mktemp -d "$r/tmp/pacelc-bench-src.XXXXXX")
	trap 'rm -rf "$src"' EXIT
	tar -C "$ROOT" --exclude=./.git --exclude=./tmp_check --exclude=./tmp_run -cf - . | tar -C "$src" -xf -
	chmod 755 "$src"
	chown -R postgres: "$src" 2>/dev/null || true
	bash "$ROOT/test/pg-root.sh" run "$v" sh -c "
		cd '${src#"$r"}' && make -s PG_CONFIG=/usr/lib/postgresql/$v/bin/pg_config clean all install >/dev/null &&
		chown -R postgres: . &&
		runuser -u postgres -- env CLIENTS=$CLIENTS DURATION=$DURATION ROUNDS=$ROUNDS PORT=$PORT \
			bash test/bench/citus_bench.sh --inside --pg $v"
	exit
fi

# ---------------------------------------------------------------------------
# Inside the root, as postgres.
export PATH="/usr/lib/postgresql/$v/bin:$PATH"
DIR=$(mktemp -d /tmp/pacelc-citus-bench.XXXXXX)
PORTS="$PORT $((PORT + 1)) $((PORT + 2)) $((PORT + 3))"
cleanup() {
	for p in $PORTS; do
		[ -d "$DIR/n$p" ] && pg_ctl -D "$DIR/n$p" -m immediate stop >/dev/null 2>&1 || true
	done
	rm -rf "$DIR"
}
trap cleanup EXIT
S=$PORT; C=$((PORT + 1)); W1=$((PORT + 2)); W2=$((PORT + 3))
for p in $PORTS; do
	initdb -D "$DIR/n$p" -A trust --no-sync >/dev/null
	libs="citus,pacelc"
	[ "$p" = "$S" ] && libs="pacelc"
	cat >>"$DIR/n$p/postgresql.conf" <<EOF
port = $p
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR'
shared_preload_libraries = '$libs'
max_connections = 200
max_prepared_transactions = 200
shared_buffers = 128MB
pacelc.databases = 'postgres'
citus.shard_count = 8
EOF
	pg_ctl -D "$DIR/n$p" -l "$DIR/n$p.log" -w start >/dev/null
	if [ "$p" = "$S" ]; then
		psql -X -q -h 127.0.0.1 -p "$p" -d postgres -c "CREATE EXTENSION pacelc"
	else
		psql -X -q -h 127.0.0.1 -p "$p" -d postgres -c "CREATE EXTENSION citus" -c "CREATE EXTENSION pacelc"
	fi
done
q() { local p=$1; shift; psql -X -q -At -h 127.0.0.1 -p "$p" -d postgres "$@"; }
q $C -c "SELECT citus_set_coordinator_host('127.0.0.1', $C)" \
	-c "SELECT citus_add_node('127.0.0.1', $W1)" -c "SELECT citus_add_node('127.0.0.1', $W2)" >/dev/null
q $C -c "SELECT * FROM pacelc.citus_setup()" >/dev/null

# 32 SKUs per worker, named by numbers (a numeric string is a text
# parameter to pgbench's prepared statements, which Citus routes)
mapfile -t g1 < <(q $C -c "SELECT i FROM generate_series(1, 400) i JOIN pg_dist_placement pl
	ON pl.shardid = get_shard_id_for_distribution_column('pacelc.sku_home', i::text)
	WHERE pl.groupid = 1 ORDER BY i LIMIT 32")
mapfile -t g2 < <(q $C -c "SELECT i FROM generate_series(1, 400) i JOIN pg_dist_placement pl
	ON pl.shardid = get_shard_id_for_distribution_column('pacelc.sku_home', i::text)
	WHERE pl.groupid = 2 ORDER BY i LIMIT 32")
all=("${g1[@]}" "${g2[@]}")
for sku in "${all[@]}"; do
	q $S -c "SELECT pacelc.set_stock('$sku', 1000000000)" >/dev/null
	q $C -c "SELECT pacelc.set_stock('$sku', 1000000000)" >/dev/null
done

# pgbench picks the r-th SKU of a list with a CASE expression (client side)
pick() {
	local i=1 s out="\\set r random(1, $#)"$'\n'"\\set k case"
	for s in "$@"; do out="$out when :r = $i then $s"; i=$((i + 1)); done
	echo "$out end"
}
{ pick "${all[@]}"; echo "SELECT pacelc.reserve(:k, 1);"; } >"$DIR/reserve_all.sql"
{ pick "${g1[@]}"; echo "SELECT pacelc.reserve(:k, 1);"; } >"$DIR/reserve_w1.sql"
{ pick "${g2[@]}"; echo "SELECT pacelc.reserve(:k, 1);"; } >"$DIR/reserve_w2.sql"
a=${g1[0]}; b=${g2[0]}
echo "SELECT pacelc.reserve_all('{$a,$b}', '{1,1}');" >"$DIR/cart_single.sql"
echo "SELECT pacelc.citus_reserve_all('{$a,$b}', '{1,1}');" >"$DIR/cart_coord.sql"

# one pgbench run: prints its tps (0 when it failed)
run() {
	local port=$1 script=$2 clients=$3 out
	out=$(pgbench -n -M prepared -c "$clients" -j 2 -T "$DURATION" -f "$script" \
		-h 127.0.0.1 -p "$port" postgres 2>&1) || true
	if grep -q "aborted" <<<"$out"; then
		grep -m1 "ERROR" <<<"$out" >&2 || true
		echo 0
		return
	fi
	sed -nE 's/^tps = ([0-9.]+) .*/\1/p' <<<"$out" | head -1
}
# the application-routed run: half the clients on each worker at once
run_routed() {
	local f1 f2
	f1=$(mktemp "$DIR/r.XXXX"); f2=$(mktemp "$DIR/r.XXXX")
	run $W1 "$DIR/reserve_w1.sql" $((CLIENTS / 2)) >"$f1" &
	run $W2 "$DIR/reserve_w2.sql" $((CLIENTS - CLIENTS / 2)) >"$f2" &
	wait
	awk '{ s += $1 } END { printf "%.1f\n", s }' "$f1" "$f2"
}

declare -A tps
add() { tps[$1]=$(awk -v a="${tps[$1]:-0}" -v b="$2" 'BEGIN { printf "%.1f", a + b }'); }
echo "pacelc on Citus $(q $C -c "SELECT extversion FROM pg_extension WHERE extname = 'citus'"), PostgreSQL $v;" \
	"$CLIENTS clients, $ROUNDS rounds of $DURATION s, $(nproc) CPUs (all nodes on this machine)"
for round in $(seq 1 "$ROUNDS"); do
	add reserve_single "$(run $S "$DIR/reserve_all.sql" "$CLIENTS")"
	add reserve_coord "$(run $C "$DIR/reserve_all.sql" "$CLIENTS")"
	add reserve_routed "$(run_routed)"
	add cart_single "$(run $S "$DIR/cart_single.sql" "$CLIENTS")"
	add cart_coord "$(run $C "$DIR/cart_coord.sql" "$CLIENTS")"
	echo "round $round done" >&2
done

fmt() { awk -v t="$1" -v r="$ROUNDS" 'BEGIN { printf "%.0f", t / r }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }
echo
printf '| %-34s | %14s | %22s | %22s |\n' "workload (transactions/s, mean)" "single node" "through the coordinator" "application-routed"
printf '|%s|%s|%s|%s|\n' "------------------------------------" "----------------" "------------------------" "------------------------"
printf '| %-34s | %14s | %22s | %22s |\n' "reserve, 64 SKUs on 2 workers" \
	"$(fmt "${tps[reserve_single]}")" \
	"$(fmt "${tps[reserve_coord]}") ($(ratio "${tps[reserve_coord]}" "${tps[reserve_single]}"))" \
	"$(fmt "${tps[reserve_routed]}") ($(ratio "${tps[reserve_routed]}" "${tps[reserve_single]}"))"
printf '| %-34s | %14s | %22s | %22s |\n' "cart of 2, one line per worker" \
	"$(fmt "${tps[cart_single]}")" \
	"$(fmt "${tps[cart_coord]}") ($(ratio "${tps[cart_coord]}" "${tps[cart_single]}"))" \
	"n/a (no atomic cart)"
echo

bad=0
for p in $S $W1 $W2 $C; do
	n=$(q $p -c "SELECT count(*) FROM pacelc.verify()")
	[ "$n" = 0 ] || { echo "verify() on port $p: $n problems"; bad=1; }
done
[ $bad = 0 ] && echo "verify(): clean on every node"
exit $bad
