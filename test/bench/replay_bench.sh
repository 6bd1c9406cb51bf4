#!/usr/bin/env bash
# Replay cost of pacelc's waiters (issue 11, item 12) and the standby read
# cost of its hooks, on a throw-away primary + one streaming standby with
# MAXCONN max_connections (the old redo wrapper scanned every backend slot
# after each commit record while anyone waited).
#  1. replay of COMMITS single-row commits with 0, 1 and 100 sessions waiting
#     (pacelc.wait_for_lsn for the last commit, so they are due only at the
#     end): replay is paused, the commits are streamed, the waiters started,
#     then replay resumed and timed until it reaches the end: wall time and
#     the startup process's CPU time.  ROUNDS rounds, the order rotated;
#     ratios to "0 waiters" paired within each round.
#     Then the cost of the redo wrapper itself (src/replay_hook.c): the
#     same replay with no waiter, standby with pacelc preloaded (every
#     record goes through the wrapper) and without it (no wrapper), ROUNDS
#     rounds alternating.  WRAPPER=0 skips it.
#  2. standby read throughput (pgbench -S, CLIENTS clients, SECS s) with
#     pacelc preloaded (hooks, seen_lsn reported in every transaction) and
#     without it, ROUNDS rounds alternating.
# Usage (root or postgres): bash test/bench/replay_bench.sh
# Environment: COMMITS=200000, MAXCONN=2000, ROUNDS=5, CLIENTS=4, SECS=10,
# READS=1 (0 skips part 2), WRAPPER=1
. "$(dirname "$0")/lib.sh"
bench_start "COMMITS MAXCONN ROUNDS CLIENTS SECS READS" "$@"
COMMITS=${COMMITS:-200000}
MAXCONN=${MAXCONN:-2000}
ROUNDS=${ROUNDS:-5}
CLIENTS=${CLIENTS:-4}
SECS=${SECS:-10}
READS=${READS:-1}
WRAPPER=${WRAPPER:-1}
bench_dir replaybench
P=55720; S=55721
bench_initdb primary "$P" <<CONF
max_connections = $MAXCONN
shared_buffers = 128MB
max_wal_senders = 4
wal_level = replica
max_wal_size = 4GB
synchronous_commit = off
shared_preload_libraries = 'pacelc'
autovacuum = off
CONF
echo "local replication all trust" >>"$DIR/primary/pg_hba.conf"
"$BIN/pg_ctl" -D "$DIR/primary" -l "$DIR/primary.log" -w start >/dev/null
PSQL=("$BIN/psql" -X -q -At -h "$DIR")
"${PSQL[@]}" -p $P -d postgres -c "CREATE EXTENSION pacelc; CREATE TABLE t (id bigserial PRIMARY KEY, v int)"
"$BIN/pgbench" -i -s 10 -q -h "$DIR" -p $P postgres >/dev/null 2>&1
"$BIN/pg_basebackup" -c fast -h "$DIR" -p $P -D "$DIR/standby" -R -X stream -C -S bench_standby >/dev/null
cat >>"$DIR/standby/postgresql.conf" <<CONF
port = $S
hot_standby_feedback = on
CONF
"$BIN/pg_ctl" -D "$DIR/standby" -l "$DIR/standby.log" -w start >/dev/null
echo "INSERT INTO t (v) VALUES (1);" >"$DIR/w.sql"
sp() { "${PSQL[@]}" -p $S -d postgres "$@"; }
pp() { "${PSQL[@]}" -p $P -d postgres "$@"; }

# one run: prints "wall_ms cpu_ms": how long replay of COMMITS commits took
# with $1 waiters, and the CPU time the startup process spent on it
# (/proc/PID/schedstat, nanoseconds; less disturbed by other load)
replay_run() {
	local w=$1 end i startup cpu0 cpu1 wall
	sp -c "SELECT pg_wal_replay_pause()" >/dev/null
	until [ "$(sp -c "SELECT pg_get_wal_replay_pause_state()")" = paused ]; do sleep 0.05; done
	"$BIN/pgbench" -n -c 4 -j 2 -t $((COMMITS / 4)) -f "$DIR/w.sql" -h "$DIR" -p $P postgres >/dev/null 2>&1
	end=$(pp -c "SELECT pg_current_wal_insert_lsn()")
	until [ "$(sp -c "SELECT pg_last_wal_receive_lsn() >= '$end'")" = t ]; do sleep 0.05; done
	for i in $(seq 1 "$w"); do
		sp -c "SELECT pacelc.wait_for_lsn('$end', '10 min')" >/dev/null &
	done
	[ "$w" = 0 ] ||
		until [ "$(sp -c "SELECT waiters FROM pacelc.replica_status")" = "$w" ]; do sleep 0.05; done
	startup=$(sp -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'startup'")
	cpu0=$(cut -d' ' -f1 "/proc/$startup/schedstat")
	wall=$(sp -c "SELECT pg_wal_replay_resume()" -c "DO \$\$ DECLARE t0 timestamptz := clock_timestamp(); BEGIN
		WHILE pg_last_wal_replay_lsn() < '$end' LOOP PERFORM pg_sleep(0.002); END LOOP;
		RAISE NOTICE 'ms=%', round(extract(epoch FROM clock_timestamp() - t0) * 1000); END \$\$" 2>&1 |
		sed -n 's/.*ms=\([0-9]*\).*/\1/p')
	cpu1=$(cut -d' ' -f1 "/proc/$startup/schedstat")
	wait
	echo "$wall $(((cpu1 - cpu0) / 1000000))"
}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "replay of $COMMITS commits, standby max_connections = $MAXCONN, $ROUNDS rounds"
declare -A walls cpus wratios cratios
order=(0 1 100)
replay_run 0 >/dev/null	# warm-up, not counted
for r in $(seq 1 "$ROUNDS"); do
	declare -A tw=() tc=()
	for k in 0 1 2; do
		w=${order[$(((k + r) % 3))]}
		read -r tw[$w] tc[$w] <<<"$(replay_run "$w")"
		walls[$w]="${walls[$w]:-} ${tw[$w]}"
		cpus[$w]="${cpus[$w]:-} ${tc[$w]}"
	done
	for w in 1 100; do
		wratios[$w]="${wratios[$w]:-} $(awk -v a="${tw[$w]}" -v b="${tw[0]}" 'BEGIN {printf "%.3f", a / b}')"
		cratios[$w]="${cratios[$w]:-} $(awk -v a="${tc[$w]}" -v b="${tc[0]}" 'BEGIN {printf "%.3f", a / b}')"
	done
done
printf "| waiters | startup CPU ms (median) | CPU ratio to 0 waiters | wall ms (median) | wall ratio | CPU runs | wall runs |\n"
printf "|---:|---:|---:|---:|---:|---|---|\n"
for w in 0 1 100; do
	printf "| %s | %s | %s | %s | %s | %s | %s |\n" "$w" \
		"$(echo "${cpus[$w]}" | median)" "$([ "$w" = 0 ] && echo 1.000 || echo "${cratios[$w]}" | median)" \
		"$(echo "${walls[$w]}" | median)" "$([ "$w" = 0 ] && echo 1.000 || echo "${wratios[$w]}" | median)" \
		"${cpus[$w]# }" "${walls[$w]# }"
done
echo "(ratios: medians of the ratios paired within each round)"

restart_standby() {
	sed -i '/^shared_preload_libraries/d' "$DIR/standby/postgresql.conf"
	echo "shared_preload_libraries = '$1'" >>"$DIR/standby/postgresql.conf"
	"$BIN/pg_ctl" -D "$DIR/standby" -l "$DIR/standby.log" -w restart >/dev/null
}

# 1b. the redo wrapper's own cost: no waiter, with and without pacelc
if [ "$WRAPPER" = 1 ]; then
	declare -A wcpu wwall
	wratio=
	for r in $(seq 1 "$ROUNDS"); do
		for lib in pacelc ''; do
			restart_standby "$lib"
			read -r tw[${lib:-none}] tc[${lib:-none}] <<<"$(replay_run 0)"
			wcpu[${lib:-none}]="${wcpu[${lib:-none}]:-} ${tc[${lib:-none}]}"
			wwall[${lib:-none}]="${wwall[${lib:-none}]:-} ${tw[${lib:-none}]}"
		done
		wratio="$wratio $(awk -v a="${tc[pacelc]}" -v b="${tc[none]}" 'BEGIN {printf "%.3f", a / b}')"
	done
	restart_standby pacelc
	echo
	echo "the redo wrapper: replay of $COMMITS commits, no waiter, $ROUNDS rounds"
	printf "| standby | startup CPU ms (median) | wall ms (median) | CPU runs |\n|---|---:|---:|---|\n"
	printf "| pacelc not loaded (no wrapper) | %s | %s | %s |\n" "$(echo "${wcpu[none]}" | median)" \
		"$(echo "${wwall[none]}" | median)" "${wcpu[none]# }"
	printf "| pacelc preloaded (every record through the wrapper) | %s | %s | %s |\n" \
		"$(echo "${wcpu[pacelc]}" | median)" "$(echo "${wwall[pacelc]}" | median)" "${wcpu[pacelc]# }"
	echo "CPU ratio, preloaded / not loaded (median of the paired ratios): $(echo "$wratio" | median)"
fi

# 2. standby reads with and without pacelc's hooks
[ "$READS" = 0 ] && exit 0
declare -A tps
for r in $(seq 1 "$ROUNDS"); do
	for lib in pacelc ''; do
		restart_standby "$lib"
		v=$("$BIN/pgbench" -n -S -c "$CLIENTS" -j 2 -T "$SECS" -h "$DIR" -p $S postgres 2>/dev/null |
			sed -n 's/^tps = \([0-9.]*\).*/\1/p')
		tps[${lib:-none}]="${tps[${lib:-none}]:-} $v"
	done
done
echo
echo "standby pgbench -S, $CLIENTS clients, $SECS s, $ROUNDS rounds"
printf "| standby | tps (median) | runs |\n|---|---:|---|\n"
printf "| pacelc not loaded | %s | %s |\n" "$(echo "${tps[none]}" | median)" "${tps[none]# }"
printf "| pacelc preloaded (seen_lsn reported every transaction) | %s | %s |\n" "$(echo "${tps[pacelc]}" | median)" "${tps[pacelc]# }"
