#!/usr/bin/env bash
# Session LSN token benchmark, side by side in one run on a throw-away
# primary with one streaming standby:
#  1. primary write throughput (pgbench inserts): plain async replication
#     without pacelc, with pacelc preloaded (tokens reported), and with
#     synchronous_commit = remote_apply;
#  2. write -> read-on-standby latency (p50/p99) and standby backend CPU of
#     pacelc.wait_for_lsn vs a client polling pg_last_wal_replay_lsn().
# Usage (root or postgres): bash test/bench/lsn_bench.sh [seconds per run]
# Environment: CLIENTS=8, TRIALS=500 (latency trials), ROUNDS=5 (throughput
# rounds; each runs every contender once, the order rotated per round).
# The synchronous_commit = off rows take the WAL flush out of the commit, so
# the per-commit CPU cost of pacelc (hooks, the token) is not hidden by it.
. "$(dirname "$0")/lib.sh"
bench_start "CLIENTS TRIALS ROUNDS" "$@"
SECS=${1:-15}
CLIENTS=${CLIENTS:-8}
TRIALS=${TRIALS:-500}
ROUNDS=${ROUNDS:-5}
bench_dir lsnbench
P=55710; S=55711
bench_initdb primary "$P" <<CONF
max_wal_senders = 4
wal_level = replica
max_wal_size = 4GB
CONF
echo "local replication all trust" >>"$DIR/primary/pg_hba.conf"
start_primary() {	# $1: shared_preload_libraries, $2: synchronous_commit
	sed -i '/^shared_preload_libraries\|^synchronous_commit\|^synchronous_standby_names/d' "$DIR/primary/postgresql.conf"
	printf "shared_preload_libraries = '%s'\nsynchronous_commit = %s\nsynchronous_standby_names = '%s'\n" \
		"$1" "$2" "$([ "$2" = remote_apply ] && echo standby || true)" >>"$DIR/primary/postgresql.conf"
	"$BIN/pg_ctl" -D "$DIR/primary" -l "$DIR/primary.log" -w restart >/dev/null 2>&1 ||
		"$BIN/pg_ctl" -D "$DIR/primary" -l "$DIR/primary.log" -w start >/dev/null
}
start_primary pacelc on
PSQL=("$BIN/psql" -X -q -At -h "$DIR")
"${PSQL[@]}" -p $P -d postgres -c "CREATE EXTENSION pacelc; CREATE TABLE t (id bigserial PRIMARY KEY, v text)"
# a slot: the CPU-bound runs write WAL faster than the standby replays it
"$BIN/pg_basebackup" -h "$DIR" -p $P -D "$DIR/standby" -R -X stream -C -S bench_standby >/dev/null
cat >>"$DIR/standby/postgresql.conf" <<CONF
port = $S
shared_preload_libraries = 'pacelc'
CONF
# pg_basebackup -R wrote primary_conninfo into postgresql.auto.conf
echo "primary_conninfo = 'host=$DIR port=$P application_name=standby'" >>"$DIR/standby/postgresql.auto.conf"
"$BIN/pg_ctl" -D "$DIR/standby" -l "$DIR/standby.log" -w start >/dev/null
echo "INSERT INTO t (v) VALUES ('x');" >"$DIR/w.sql"

# Waits until the standby has replayed everything, so that no run starts
# with the previous run's backlog (remote_apply would pay for it).
catch_up() {
	local i
	for i in $(seq 1 600); do
		[ "$("${PSQL[@]}" -p $P -d postgres -c "SELECT coalesce(bool_and(replay_lsn >= pg_current_wal_lsn()), false) FROM pg_stat_replication")" = t ] && return 0
		sleep 0.1
	done
	echo "standby did not catch up" >&2; exit 1
}
tps() {	# $1: synchronous_commit of the clients
	catch_up
	PGOPTIONS="-c synchronous_commit=$1" \
	"$BIN/pgbench" -n -c "$CLIENTS" -j 2 -T "$SECS" -f "$DIR/w.sql" -h "$DIR" -p $P postgres 2>/dev/null |
		sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}
# ROUNDS rounds; in each, every contender runs once, in an order rotated
# from round to round (a drifting machine then hurts none of them
# systematically); the ratios are taken per round (paired) and their
# median is reported, next to the median tps.
declare -A T R
CONTENDERS=(plain pacelc remote plain_async pacelc_async)
for round in $(seq 1 "$ROUNDS"); do
	n=${#CONTENDERS[@]}
	declare -A this=()
	for k in $(seq 0 $((n - 1))); do
		c=${CONTENDERS[$(( (k + round) % n ))]}
		case $c in
			plain) start_primary '' on; v=$(tps on) ;;
			pacelc) start_primary pacelc on; v=$(tps on) ;;
			remote) start_primary pacelc remote_apply; v=$(tps remote_apply) ;;
			plain_async) start_primary '' on; v=$(tps off) ;;
			pacelc_async) start_primary pacelc on; v=$(tps off) ;;
		esac
		this[$c]=$v
		T[$c]="${T[$c]:-} $v"
	done
	R[pacelc]="${R[pacelc]:-} $(awk "BEGIN{print ${this[pacelc]}/${this[plain]}}")"
	R[remote]="${R[remote]:-} $(awk "BEGIN{print ${this[remote]}/${this[plain]}}")"
	R[pacelc_async]="${R[pacelc_async]:-} $(awk "BEGIN{print ${this[pacelc_async]}/${this[plain_async]}}")"
	echo "round $round: plain ${this[plain]}, pacelc ${this[pacelc]}, remote_apply ${this[remote]}, async plain ${this[plain_async]}, async pacelc ${this[pacelc_async]} tps"
done
start_primary pacelc on
median() { echo "$@" | tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
echo
echo "primary write throughput ($CLIENTS clients, ${SECS} s runs, $ROUNDS rounds, one async standby; medians, ratios paired per round):"
echo "| primary writes | tps (median) | ratio to plain (median of rounds) | runs |"
echo "|---|---:|---:|---|"
printf "| %s | %.0f | %s | %s |\n" "plain, pacelc not loaded (synchronous_commit on)" "$(median ${T[plain]})" "1.000" "${T[plain]# }"
printf "| %s | %.0f | %.3f | %s |\n" "pacelc loaded, token reported on every commit" "$(median ${T[pacelc]})" "$(median ${R[pacelc]})" "${T[pacelc]# }"
printf "| %s | %.0f | %.3f | %s |\n" "synchronous_commit = remote_apply" "$(median ${T[remote]})" "$(median ${R[remote]})" "${T[remote]# }"
printf "| %s | %.0f | %s | %s |\n" "plain, synchronous_commit off (CPU-bound)" "$(median ${T[plain_async]})" "1.000" "${T[plain_async]# }"
printf "| %s | %.0f | %.3f | %s |\n" "pacelc, synchronous_commit off (CPU-bound)" "$(median ${T[pacelc_async]})" "$(median ${R[pacelc_async]})" "${T[pacelc_async]# }"

# write -> read latency under a light background write load
"$BIN/pgbench" -n -c 2 -j 1 -T 60 -R 200 -f "$DIR/w.sql" -h "$DIR" -p $P postgres >/dev/null 2>&1 &
LOAD=$!
echo; echo "write -> read-on-standby latency ($TRIALS trials per run, background load 200 tps):"
/usr/bin/python3 - "$DIR" $P $S "$TRIALS" <<'PY'
import sys, time, psycopg2
d, p, s, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
pri = psycopg2.connect(host=d, port=p, dbname='postgres'); pri.autocommit = True
def cpu(pid):
    f = open('/proc/%d/stat' % pid).read().split(')')[1].split()
    return (int(f[11]) + int(f[12])) / __import__('os').sysconf('SC_CLK_TCK')
def run(mode):
    st = psycopg2.connect(host=d, port=s, dbname='postgres'); st.autocommit = True
    c = st.cursor(); c.execute("SELECT pg_backend_pid()"); pid = c.fetchone()[0]
    lat = []; c0 = cpu(pid); t0 = time.time(); queries = 0
    for i in range(n):
        pri.cursor().execute("INSERT INTO t (v) VALUES ('r')")
        tok = pri.get_parameter_status('pacelc.commit_lsn')
        a = time.perf_counter()
        if mode == 'wait':
            c.execute("SELECT pacelc.wait_for_lsn(%s, '5s')", (tok,)); queries += 1
        else:
            while True:
                c.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (tok,)); queries += 1
                if c.fetchone()[0]:
                    break
        lat.append((time.perf_counter() - a) * 1000)
    lat.sort()
    return lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1], cpu(pid) - c0, queries / n
for mode in ('wait', 'poll', 'wait', 'poll'):
    p50, p99, c, q = run(mode)
    name = 'pacelc.wait_for_lsn (woken by replay)' if mode == 'wait' else 'client polling pg_last_wal_replay_lsn()'
    print("  %-42s p50 %6.3f ms  p99 %6.3f ms  standby backend CPU %5.2f s  queries/read %6.1f" % (name, p50, p99, c, q))
PY
kill $LOAD 2>/dev/null || true
