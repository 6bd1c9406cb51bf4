#!/usr/bin/env bash
# The worker-pool benchmark (issue 12).  Starts its own throw-away server
# (pacelc preloaded) and measures how fast the database's workers handle
# messages whose handler sleeps 5 ms (I/O-bound work: a call to a payment
# provider, say), with pacelc.workers_per_database = 1, 2 and 4:
#
#   4 queues      MESSAGES messages spread over 4 queues, each queue at its
#                 default concurrency of 1 (first attempts in order)
#   1 queue       MESSAGES messages in one queue whose concurrency is set to
#                 the pool size (no order between its messages)
#
# The rate is messages/s from the commit of the enqueue until the last one
# is done.  workers_per_database = 1 is the single worker of 0.2.
#
# Usage (as root: installs missing packages, builds and installs pacelc, then
# reruns itself as user postgres; or directly as an unprivileged user):
#   bash test/bench/pool_bench.sh
# Environment: PG_CONFIG (default /usr/lib/postgresql/15/bin/pg_config),
#   MESSAGES=1000, SLEEP_MS=5, PORT=55512.
. "$(dirname "$0")/lib.sh"
bench_start "MESSAGES SLEEP_MS PORT" "$@"

MESSAGES=${MESSAGES:-1000}
SLEEP_MS=${SLEEP_MS:-5}
PORT=${PORT:-55512}

bench_dir pbench
bench_initdb data "$PORT" -U postgres <<CONF
shared_preload_libraries = 'pacelc'
max_worker_processes = 16
pacelc.launcher_naptime = 1s
pacelc.worker_naptime = 1s
pacelc.workers_per_database = 1
CONF
"$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w start >/dev/null
psql() { "$BIN/psql" -X -q -At -h "$DIR" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }

psql <<SQL
CREATE EXTENSION pacelc;
CREATE ROLE bench;
GRANT USAGE ON SCHEMA pacelc TO bench;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pacelc TO bench;
CREATE FUNCTION io_bound(p jsonb) RETURNS void LANGUAGE sql
	AS \$\$ SELECT pg_sleep($SLEEP_MS / 1000.0) \$\$;
SET ROLE bench;
SELECT pacelc.create_queue('q' || i, 'io_bound(jsonb)') FROM generate_series(1, 4) i;
SELECT pacelc.create_queue('one', 'io_bound(jsonb)');
SQL

# run WORKERS SHAPE: prints the rate in messages/s
run() {
	local workers=$1 shape=$2 t0 t1
	psql -c "ALTER SYSTEM SET pacelc.workers_per_database = $workers" -c "SELECT pg_reload_conf()" >/dev/null
	psql -c "UPDATE pacelc.queues SET concurrency = $workers WHERE name = 'one'"
	# wait for the pool to have its size
	for _ in $(seq 1 100); do
		[ "$(psql -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pacelc worker'")" = "$workers" ] && break
		sleep 0.1
	done
	psql -c "DELETE FROM pacelc.messages" -c "DELETE FROM pacelc.message_errors"
	t0=$(date +%s.%N)
	if [ "$shape" = 4 ]; then
		psql -c "SELECT count(pacelc.enqueue('q' || (1 + i % 4), '{}')) FROM generate_series(1, $MESSAGES) i" >/dev/null
	else
		psql -c "SELECT count(pacelc.enqueue('one', '{}')) FROM generate_series(1, $MESSAGES) i" >/dev/null
	fi
	until [ "$(psql -c "SELECT count(*) FROM pacelc.messages WHERE state = 'ready'")" = 0 ]; do
		sleep 0.05
	done
	t1=$(psql -c "SELECT extract(epoch FROM max(done_at)) FROM pacelc.messages")
	awk -v n="$MESSAGES" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }'
}

echo "pool benchmark: $MESSAGES messages, handler sleeps $SLEEP_MS ms, $(nproc) CPUs, PostgreSQL $("$BIN/postgres" --version | awk '{print $3}')"
printf '%-22s %16s %16s\n' "workers_per_database" "4 queues (msg/s)" "1 queue (msg/s)"
for w in 1 2 4; do
	a=$(run "$w" 4)
	b=$(run "$w" 1)
	printf '%-22s %16s %16s\n' "$w" "$a" "$b"
done
echo "(ideal for one worker: $(awk -v s="$SLEEP_MS" 'BEGIN { printf "%.0f", 1000 / s }') msg/s; workers_per_database = 1 is 0.2's single worker)"
