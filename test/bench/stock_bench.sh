#!/usr/bin/env bash
# The hot-SKU benchmark (issue 6): how much does it cost when every buyer
# goes for one SKU?  Starts its own throw-away server (same settings for every
# contender, synchronous_commit on, pacelc preloaded) and runs, side by side
# at each client count, the pgbench scripts in test/bench/stock/:
#
#   pacelc_uncontended   reserve + confirm (2 transactions), own SKU per client
#   pacelc_hot           reserve + confirm (2 transactions), one SKU for all
#   forupdate_uncont     plain SELECT ... FOR UPDATE + UPDATE + order INSERT, own row
#   forupdate_hot        the same on one row (the usual strict design)
#   condupdate_hot       plain UPDATE ... WHERE available >= 1 + order INSERT, one row
#   reserve_hot          reserve alone (no ttl, no key), one SKU, autocommit   } issue 15:
#   insert_bare          the floor: a bare one-row INSERT of the same width   } the reserve
#   reserve_hot_ttl_key  reserve alone with ttl and a new idempotency key     } path against
#   insert_bare_ttl_key  the bare INSERT with expiry and key filled in        } the INSERT floor
#   (the last four as an ordinary role with pacelc_app, bench_app)
#
# then the sell-out: 10,000 reserve attempts on a SKU with 100 units (pacelc
# and FOR UPDATE).  After every run it checks pacelc.verify() and that units
# sold never exceed units stocked; a run that oversells fails the benchmark.
#
# Usage (as root: installs missing packages, builds and installs pacelc, then
# reruns itself as user postgres; or directly as an unprivileged user):
#   bash test/bench/stock_bench.sh            # full: 1 8 32 64 128 clients, 12 s each (~7 min)
#   bash test/bench/stock_bench.sh --quick    # 1 8 64 clients, 4 s each (~2 min)
#   bash test/bench/stock_bench.sh --reserve  # issue 15's ratios alone: the four reserve-path
#                                             # contenders at 64 clients, 5 rounds of 10 s (~5 min)
# Environment: PG_CONFIG (default /usr/lib/postgresql/15/bin/pg_config),
#   CLIENTS="1 8 32 64 128", DURATION=12 (seconds per run), ROUNDS=1 (5 with
#   --reserve: every contender runs once per round, order rotated; the
#   tables show medians), PORT=55600,
#   CONTENDERS="pacelc_uncontended pacelc_hot forupdate_uncontended forupdate_hot condupdate_hot
#               reserve_hot insert_bare reserve_hot_ttl_key insert_bare_ttl_key",
#   SELLOUT_STOCK=100, SELLOUT_ATTEMPTS=10000, SELLOUT_CLIENTS=100.
. "$(dirname "$0")/lib.sh"
bench_start "CLIENTS DURATION ROUNDS PORT CONTENDERS SELLOUT_STOCK SELLOUT_ATTEMPTS SELLOUT_CLIENTS" "$@"
RESERVE=0
ARGS=()
for a in "$@"; do
	if [ "$a" = --reserve ]; then RESERVE=1; else ARGS+=("$a"); fi
done
bench_options ${ARGS[@]+"${ARGS[@]}"}
if [ $RESERVE = 1 ]; then
	CLIENTS=${CLIENTS:-64}
	DURATION=${DURATION:-10}
	ROUNDS=${ROUNDS:-5}
	CONTENDERS=${CONTENDERS:-insert_bare reserve_hot insert_bare_ttl_key reserve_hot_ttl_key}
elif [ $QUICK = 1 ]; then
	CLIENTS=${CLIENTS:-1 8 64}
	DURATION=${DURATION:-4}
else
	CLIENTS=${CLIENTS:-1 8 32 64 128}
	DURATION=${DURATION:-12}
fi
ROUNDS=${ROUNDS:-1}
CONTENDERS=${CONTENDERS:-pacelc_uncontended pacelc_hot forupdate_uncontended forupdate_hot condupdate_hot reserve_hot insert_bare reserve_hot_ttl_key insert_bare_ttl_key}
PORT=${PORT:-55600}
SELLOUT_STOCK=${SELLOUT_STOCK:-100}
SELLOUT_ATTEMPTS=${SELLOUT_ATTEMPTS:-10000}
SELLOUT_CLIENTS=${SELLOUT_CLIENTS:-100}
SCRIPTS=$(cd "$(dirname "$0")/stock" && pwd)
NCPU=$(nproc)

bench_dir bench
bench_initdb data "$PORT" -U postgres <<CONF
shared_preload_libraries = 'pacelc'
max_connections = 300
shared_buffers = 256MB
synchronous_commit = on
fsync = on
max_wal_size = 4GB
checkpoint_timeout = 30min
autovacuum_naptime = 10s
log_min_messages = warning
CONF
bench_pg_start data "$PORT"
server_ticks() { bench_server_ticks "$DIR/data"; }
"${PSQL[@]}" -f "$SCRIPTS/setup.sql" >/dev/null

echo "pacelc hot-SKU benchmark: $("$BIN/postgres" --version), $NCPU CPUs, ${DURATION}s per run, clients: $CLIENTS, rounds: $ROUNDS"
echo "server: synchronous_commit=on, fsync=on, shared_buffers=256MB, same for every contender"
echo

# Fails the whole benchmark loudly when any invariant is broken.
check_invariants() {
	local problems
	problems=$("${PSQL[@]}" -f "$SCRIPTS/check.sql")
	if [ -n "$problems" ]; then
		echo "INVARIANT BROKEN after $1:" >&2
		echo "$problems" >&2
		echo "BENCHMARK FAILED: oversell or inconsistent stock" >&2
		exit 1
	fi
}

# Prints "avg p50 p99" in ms of the per-transaction latencies in pgbench's
# logs $1* (pgbench's own "latency average" is derived from the run time).
latencies() {
	cat "$1"* | awk '{print $3}' | sort -n | awk '
		{ v[NR] = $1; s += $1 }
		END {
			if (NR == 0) { print "0 0 0"; exit }
			i50 = int(NR * 0.50); if (i50 < NR * 0.50) i50++; if (i50 < 1) i50 = 1
			i99 = int(NR * 0.99); if (i99 < NR * 0.99) i99++; if (i99 < 1) i99 = 1
			printf "%.2f %.2f %.2f\n", s / NR / 1000, v[i50] / 1000, v[i99] / 1000
		}'
}

# Runs one pgbench script; records "contender clients tps avg p50 p99 round".
# The reserve-path contenders (issue 15) connect as bench_app, an ordinary
# role with pacelc_app, as an application would.
RESULTS=$DIR/results
: >"$RESULTS"
run_one() {
	local name=$1 c=$2 round=$3 out logp jobs tps avg p50 p99 user=postgres t0 ntx cpu
	jobs=$(( c < NCPU ? c : NCPU ))
	out=$DIR/out.$name.$c
	logp=$DIR/log.$name.$c
	case $name in reserve_hot*|insert_bare*) user=bench_app ;; esac
	"${PSQL[@]}" -c "VACUUM bench_stock" -c "CHECKPOINT"
	sleep 1
	t0=$(server_ticks)
	if ! "$BIN/pgbench" -n -M prepared -U "$user" -c "$c" -j "$jobs" -T "$DURATION" \
		-f "$SCRIPTS/$name.sql" --log --log-prefix="$logp" >"$out" 2>&1; then
		cat "$out" >&2
		echo "BENCHMARK FAILED: pgbench $name at $c clients" >&2
		exit 1
	fi
	if grep -q "aborted in command" "$out"; then
		cat "$out" >&2; echo "BENCHMARK FAILED: client aborted" >&2; exit 1
	fi
	tps=$(sed -nE 's/^tps = ([0-9.]+) \(without.*/\1/p' "$out")
	ntx=$(sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' "$out")
	sleep 1		# the run's backends exit and are reaped
	cpu=$(awk -v d="$(( $(server_ticks) - t0 ))" -v hz="$HZ" -v n="$ntx" 'BEGIN { printf "%.0f", (n > 0) ? (d / hz * 1e6 / n) : 0 }')
	read -r avg p50 p99 < <(latencies "$logp")
	rm -f "$logp"*
	# holds pile up in the reserve-alone runs: the all-visible pages keep
	# verify()'s per-key lookups index-only (autovacuum would, given time)
	case $name in reserve_hot*) "${PSQL[@]}" -c "VACUUM pacelc.reservation_data, pacelc.idempotency_keys" ;; esac
	echo "$name $c $tps $avg $p50 $p99 $round $cpu" >>"$RESULTS"
	printf "  %-22s %4s clients %8.0f tps  avg %8.2f ms  p50 %8.2f ms  p99 %8.2f ms  server CPU %5s us/tx\n" \
		"$name" "$c" "$tps" "$avg" "$p50" "$p99" "$cpu"
	check_invariants "$name at $c clients"
}

# Side by side: every contender at each client count, the order rotated from
# one count (and round) to the next so that no contender always runs first.
read -ra ORDER <<<"$CONTENDERS"
i=0
for r in $(seq 1 "$ROUNDS"); do
	for c in $CLIENTS; do
		if [ "$ROUNDS" -gt 1 ]; then echo "== $c clients, round $r"; else echo "== $c clients"; fi
		for k in "${!ORDER[@]}"; do
			run_one "${ORDER[$(( (k + i) % ${#ORDER[@]} ))]}" "$c" "$r"
		done
		i=$((i + 1))
	done
done

# Sell-out: SELLOUT_ATTEMPTS attempts at SELLOUT_STOCK units; exactly
# SELLOUT_STOCK may succeed, and failures must not wait on anyone.
sellout() {
echo
echo "== sell-out: $SELLOUT_ATTEMPTS reserve attempts by $SELLOUT_CLIENTS clients on a SKU with $SELLOUT_STOCK units"
per_client=$(( (SELLOUT_ATTEMPTS + SELLOUT_CLIENTS - 1) / SELLOUT_CLIENTS ))
attempts=$(( per_client * SELLOUT_CLIENTS ))
"${PSQL[@]}" -c "SELECT pacelc.set_stock('sellout', $SELLOUT_STOCK)" \
	-c "INSERT INTO bench_stock VALUES ('sellout', $SELLOUT_STOCK)" \
	-c "INSERT INTO bench_stocked VALUES ('sellout', $SELLOUT_STOCK)" >/dev/null
SELLOUT=$DIR/sellout
: >"$SELLOUT"
for design in pacelc forupdate; do
	out=$DIR/out.sellout.$design
	if ! "$BIN/pgbench" -n -M prepared -c "$SELLOUT_CLIENTS" -j "$NCPU" -t "$per_client" \
		-f "$SCRIPTS/sellout_$design.sql" >"$out" 2>&1 || grep -q "aborted in command" "$out"; then
		cat "$out" >&2; echo "BENCHMARK FAILED: sell-out ($design): an attempt failed with an error other than PC001" >&2; exit 1
	fi
	tps=$(sed -nE 's/^tps = ([0-9.]+) \(without.*/\1/p' "$out")
	"${PSQL[@]}" -F ' ' -c "
		SELECT '$design', count(*), count(*) FILTER (WHERE ok), count(*) FILTER (WHERE NOT ok),
			   round((percentile_cont(0.99) WITHIN GROUP (ORDER BY us) FILTER (WHERE NOT ok) / 1000)::numeric, 3),
			   round((avg(us) FILTER (WHERE NOT ok) / 1000)::numeric, 3),
			   round((max(us) FILTER (WHERE NOT ok) / 1000)::numeric, 3),
			   round((percentile_cont(0.99) WITHIN GROUP (ORDER BY us) FILTER (WHERE ok) / 1000)::numeric, 3),
			   round($tps)
		  FROM bench_attempts WHERE design = '$design'" >>"$SELLOUT"
done
check_invariants "sell-out"
# pacelc's successes are holds: exactly SELLOUT_STOCK held, nothing available.
read -r held avail < <("${PSQL[@]}" -F ' ' -c "SELECT held, available FROM pacelc.stock WHERE sku = 'sellout'")
sold_plain=$("${PSQL[@]}" -c "SELECT count(*) FROM bench_orders WHERE sku = 'sellout'")
# One more attempt must fail with PC001 at once.
pc001=$("${PSQL[@]}" -c "DO \$\$ BEGIN PERFORM pacelc.reserve('sellout'); RAISE EXCEPTION 'sold-out reserve succeeded'; EXCEPTION WHEN SQLSTATE 'PC001' THEN RAISE NOTICE 'ok'; END \$\$" 2>&1)
printf "  %-10s %8s %8s %8s %14s %12s %12s %14s %8s\n" design attempts ok failed "fail p99 ms" "fail avg ms" "fail max ms" "success p99 ms" tps
while read -r d n ok bad p99 favg fmax sp99 tps; do
	printf "  %-10s %8s %8s %8s %14s %12s %12s %14s %8s\n" "$d" "$n" "$ok" "$bad" "$p99" "$favg" "$fmax" "$sp99" "$tps"
done <"$SELLOUT"
echo "  (server-side time of each attempt, measured inside the function; a failed pacelc attempt is PC001, caught)"
fail=0
read -r _ n ok _ <"$SELLOUT"
if [ "$n" != "$attempts" ] || [ "$ok" != "$SELLOUT_STOCK" ] || [ "$held" != "$SELLOUT_STOCK" ] || [ "$avail" != 0 ]; then
	echo "SELL-OUT FAILED (pacelc): $n attempts, $ok succeeded, held $held, available $avail; expected exactly $SELLOUT_STOCK" >&2
	fail=1
fi
if [ "$sold_plain" != "$SELLOUT_STOCK" ]; then
	echo "SELL-OUT FAILED (FOR UPDATE): sold $sold_plain of $SELLOUT_STOCK" >&2
	fail=1
fi
case $pc001 in *ok*) ;; *) echo "SELL-OUT FAILED: reserve on a sold-out SKU did not raise PC001: $pc001" >&2; fail=1 ;; esac
[ $fail = 0 ] || exit 1
echo "  pacelc: exactly $SELLOUT_STOCK of $attempts succeeded, all others PC001; FOR UPDATE sold $sold_plain"
}
[ $RESERVE = 1 ] || sellout

# Summary: TPS / latency per contender and client count, then the ratios.
echo
echo "== summary (tps = reserve+confirm pairs per second for pacelc, orders per second for plain SQL)"
printf "%-8s" clients
for name in $CONTENDERS; do printf " %24s" "$name"; done
echo
printf "%-8s" ""
for name in $CONTENDERS; do printf " %24s" "tps / avg / p99 ms"; done
echo
# The median of field f over the rounds of contender n at c clients.
get() {
	awk -v n="$1" -v c="$2" -v f="$3" '$1 == n && $2 == c { print $f }' "$RESULTS" | sort -g |
		awk '{ v[NR] = $1 } END { if (NR == 0) exit; if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
for c in $CLIENTS; do
	printf "%-8s" "$c"
	for name in $CONTENDERS; do
		printf " %24s" "$(awk -v t="$(get "$name" "$c" 3)" -v a="$(get "$name" "$c" 4)" -v p="$(get "$name" "$c" 6)" \
			'BEGIN { printf "%.0f / %.1f / %.1f", t, a, p }')"
	done
	echo
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "-"; else printf "%.2f\n", a / b }'; }
has() { for n in $CONTENDERS; do [ "$n" = "$1" ] && return 0; done; return 1; }
if has pacelc_hot && has pacelc_uncontended; then
echo
echo "ratios               hot/uncont tps   hot/FOR UPDATE tps   hot/cond.UPDATE tps   hot/uncont p99   FOR UPDATE hot/uncont tps"
for c in $CLIENTS; do
	printf "%-3s clients %17s %20s %21s %16s %27s\n" "$c" \
		"$(ratio "$(get pacelc_hot "$c" 3)" "$(get pacelc_uncontended "$c" 3)")" \
		"$(ratio "$(get pacelc_hot "$c" 3)" "$(get forupdate_hot "$c" 3)")" \
		"$(ratio "$(get pacelc_hot "$c" 3)" "$(get condupdate_hot "$c" 3)")" \
		"$(ratio "$(get pacelc_hot "$c" 6)" "$(get pacelc_uncontended "$c" 6)")" \
		"$(ratio "$(get forupdate_hot "$c" 3)" "$(get forupdate_uncontended "$c" 3)")"
done
fi

# Issue 15: the reserve path against the INSERT floor, per round (each
# ratio from runs of the same round, side by side) and their median.
RATIOS=$DIR/ratios
: >"$RATIOS"
med() { awk -v c="$1" -v f="$2" '$1 == c && $f != "-" { print $f }' "$RATIOS" | sort -g |
	awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
if has reserve_hot && has insert_bare; then
	echo
	echo "reserve path / bare INSERT         tps: reserve/INSERT   +ttl+key/INSERT   +ttl+key/same width    server CPU per tx: INSERT/reserve   same width/+ttl+key"
	for c in $CLIENTS; do
		for r in $(seq 1 "$ROUNDS"); do
			g() { awk -v n="$1" -v c="$c" -v r="$r" -v f="$2" '$1 == n && $2 == c && $7 == r { print $f }' "$RESULTS"; }
			a=$(ratio "$(g reserve_hot 3)" "$(g insert_bare 3)")
			b=$(ratio "$(g reserve_hot_ttl_key 3)" "$(g insert_bare 3)")
			k=$(ratio "$(g reserve_hot_ttl_key 3)" "$(g insert_bare_ttl_key 3)")
			ca=$(ratio "$(g insert_bare 8)" "$(g reserve_hot 8)")
			ck=$(ratio "$(g insert_bare_ttl_key 8)" "$(g reserve_hot_ttl_key 8)")
			echo "$c $r $a $b $k $ca $ck" >>"$RATIOS"
			printf "%-3s clients, round %-2s %20s %17s %21s %35s %21s\n" "$c" "$r" "$a" "$b" "$k" "$ca" "$ck"
		done
		printf "%-3s clients, median   %20s %17s %21s %35s %21s\n" "$c" \
			"$(med "$c" 3)" "$(med "$c" 4)" "$(med "$c" 5)" "$(med "$c" 6)" "$(med "$c" 7)"
	done
fi

# The issues' goals at 64 clients (reported, not enforced: they depend on the machine).
goal() { awk -v v="$2" -v t="$3" -v op="$4" 'BEGIN { ok = (v != "-") && ((op == ">=") ? (v >= t) : (v <= t)); printf "  %-52s %6s (goal %s %s)  %s\n", ARGV[1], v, op, t, ok ? "met" : "MISSED" }' "$1"; }
if grep -q "^reserve_hot 64 " "$RESULTS" && grep -q "^insert_bare 64 " "$RESULTS"; then
	echo
	echo "issue 15 goals at 64 clients (median of the rounds' ratios):"
	goal "reserve (no ttl, no key) / bare INSERT, tps" "$(med 64 3)" 0.8 ">="
	if has reserve_hot_ttl_key && has insert_bare_ttl_key; then
		goal "reserve with ttl and key / bare INSERT same width" "$(med 64 5)" 0.7 ">="
		echo "  (reserve with ttl and key / the plain bare INSERT:        $(med 64 4))"
		echo "  (server CPU per transaction, bare INSERT / reserve:       $(med 64 6);"
		echo "   same width / reserve with ttl and key:                   $(med 64 7))"
	fi
fi
if grep -q "^pacelc_hot 64 " "$RESULTS" && grep -q "^pacelc_uncontended 64 " "$RESULTS"; then
	echo
	echo "issue 6 goals at 64 clients:"
	goal "pacelc hot / pacelc uncontended, tps" "$(ratio "$(get pacelc_hot 64 3)" "$(get pacelc_uncontended 64 3)")" 0.8 ">="
	[ -n "$(get forupdate_hot 64 3)" ] && goal "pacelc hot / FOR UPDATE hot, tps" "$(ratio "$(get pacelc_hot 64 3)" "$(get forupdate_hot 64 3)")" 5 ">="
	goal "pacelc hot p99 / pacelc uncontended p99" "$(ratio "$(get pacelc_hot 64 6)" "$(get pacelc_uncontended 64 6)")" 2 "<="
fi
echo
echo "every run: pacelc.verify() clean, units sold <= units stocked, stock conserved"
