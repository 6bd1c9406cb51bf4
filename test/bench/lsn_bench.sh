#!/usr/bin/env bash
# Session LSN token benchmark, side by side in one run on a throw-away
# primary with one streaming standby:
#  1. primary write throughput (pgbench inserts): plain async replication
#     without pacelc, with pacelc preloaded (tokens reported), and with
#     synchronous_commit = remote_apply;
#  2. write -> read-on-standby latency (p50/p99) and standby backend CPU of
#     pacelc.wait_for_lsn vs a client polling pg_last_wal_replay_lsn().
# Usage (root or postgres): bash test/bench/lsn_bench.sh [seconds per run]
set -euo pipefail
SECS=${1:-15}
CLIENTS=${CLIENTS:-8}
TRIALS=${TRIALS:-500}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
if [ "$(id -u)" = 0 ]; then
	bash "$ROOT/test/install-deps.sh"
	make -C "$ROOT" -s PG_CONFIG="$PG_CONFIG" install >/dev/null
	exec runuser -u postgres -- env PG_CONFIG="$PG_CONFIG" CLIENTS="$CLIENTS" TRIALS="$TRIALS" bash "$0" "$@"
fi
BIN=$("$PG_CONFIG" --bindir)
DIR=$(mktemp -d /tmp/pacelc-lsnbench.XXXXXX)
P=55710; S=55711
cleanup() {
	"$BIN/pg_ctl" -D "$DIR/standby" -m immediate stop >/dev/null 2>&1 || true
	"$BIN/pg_ctl" -D "$DIR/primary" -m immediate stop >/dev/null 2>&1 || true
	rm -rf "$DIR"
}
trap cleanup EXIT INT TERM
"$BIN/initdb" -D "$DIR/primary" -A trust >/dev/null
cat >>"$DIR/primary/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$DIR'
port = $P
max_wal_senders = 4
wal_level = replica
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
"$BIN/pg_basebackup" -h "$DIR" -p $P -D "$DIR/standby" -R -X stream >/dev/null
cat >>"$DIR/standby/postgresql.conf" <<CONF
port = $S
shared_preload_libraries = 'pacelc'
CONF
# pg_basebackup -R wrote primary_conninfo into postgresql.auto.conf
echo "primary_conninfo = 'host=$DIR port=$P application_name=standby'" >>"$DIR/standby/postgresql.auto.conf"
"$BIN/pg_ctl" -D "$DIR/standby" -l "$DIR/standby.log" -w start >/dev/null
echo "INSERT INTO t (v) VALUES ('x');" >"$DIR/w.sql"

tps() {
	"$BIN/pgbench" -n -c "$CLIENTS" -j 2 -T "$SECS" -f "$DIR/w.sql" -h "$DIR" -p $P postgres 2>/dev/null |
		sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}
declare -A T
for round in 1 2; do
	start_primary '' on;              T[plain]="${T[plain]:-} $(tps)"
	start_primary pacelc on;          T[pacelc]="${T[pacelc]:-} $(tps)"
	start_primary pacelc remote_apply; T[remote]="${T[remote]:-} $(tps)"
done
start_primary pacelc on
avg() { echo "$@" | awk '{s=0; for (i=1;i<=NF;i++) s+=$i; printf "%.0f", s/NF}'; }
plain=$(avg ${T[plain]}); pac=$(avg ${T[pacelc]}); rem=$(avg ${T[remote]})
echo
echo "primary write throughput ($CLIENTS clients, ${SECS}s x 2 rounds, synchronous_commit on, one async standby):"
printf "  %-40s %8s tps  (runs:%s)\n" "plain, pacelc not loaded" "$plain" "${T[plain]}"
printf "  %-40s %8s tps  (runs:%s)  ratio %.3f\n" "pacelc loaded, token reported" "$pac" "${T[pacelc]}" "$(awk "BEGIN{print $pac/$plain}")"
printf "  %-40s %8s tps  (runs:%s)  ratio %.3f\n" "synchronous_commit = remote_apply" "$rem" "${T[remote]}" "$(awk "BEGIN{print $rem/$plain}")"

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
