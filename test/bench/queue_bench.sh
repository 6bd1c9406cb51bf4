#!/usr/bin/env bash
# The compensation-queue benchmark (issue 5).  Starts its own throw-away
# server (pacelc preloaded, synchronous_commit on) and measures, side by side
# in one run, with a handler that does one small INSERT:
#
#   pacelc       pacelc.enqueue() by PRODUCERS clients; pacelc's background
#                worker runs the handler (batch = pacelc.worker_batch)
#   skiplocked   INSERT into a plain table by PRODUCERS clients; CONSUMERS
#                polling consumers (pgbench) take BATCH rows with
#                FOR UPDATE SKIP LOCKED, insert, delete, sleep POLL_MS when
#                the table is empty
#   pgq          PgQ (Debian package postgresql-15-pgq3, installed when run as
#                root): producers call pgq.insert_event(); one consumer
#                (PgQ's design: each consumer sees every event) ticks, takes
#                the next batch, inserts, finishes it, sleeps POLL_MS when
#                idle.  Skipped (and said so) if pgq is not installed.
#
# For each: enqueue rate (messages/s committed by the producers during
# DURATION s), processing rate (messages/s from the first enqueue until the
# last message was handled), and enqueue -> handler-start latency p50/p99
# (the handler's clock_timestamp() minus the enqueuer's) under that load
# and when idle (one client enqueuing one message every 20 ms).
#
# Usage (as root: installs missing packages, builds and installs pacelc, then
# reruns itself as user postgres; or directly as an unprivileged user):
#   bash test/bench/queue_bench.sh            # DURATION=10
#   bash test/bench/queue_bench.sh --quick    # DURATION=3, fewer idle samples
# Environment: PG_CONFIG (default /usr/lib/postgresql/15/bin/pg_config),
#   PRODUCERS=8, CONSUMERS=4, BATCH=100, POLL_MS=10, DURATION=10,
#   IDLE_MESSAGES=300, PORT=55500.
. "$(dirname "$0")/lib.sh"
# the PgQ contender, benchmark only (the tests do not need it)
BENCH_EXTRA_DEBS=postgresql-15-pgq3 \
	bench_start "PRODUCERS CONSUMERS BATCH POLL_MS DURATION IDLE_MESSAGES PORT" "$@"
bench_options "$@"
if [ $QUICK = 1 ]; then
	DURATION=${DURATION:-3}
	IDLE_MESSAGES=${IDLE_MESSAGES:-100}
fi
DURATION=${DURATION:-10}
IDLE_MESSAGES=${IDLE_MESSAGES:-300}
PRODUCERS=${PRODUCERS:-8}
CONSUMERS=${CONSUMERS:-4}
BATCH=${BATCH:-100}
POLL_MS=${POLL_MS:-10}
PORT=${PORT:-55500}
SCRIPTS=$(cd "$(dirname "$0")/queue" && pwd)
NCPU=$(nproc)

bench_dir qbench		# also kills a consumer left running
CONSUMER_PID=
bench_initdb data "$PORT" -U postgres <<CONF
shared_preload_libraries = 'pacelc'
max_connections = 100
shared_buffers = 256MB
synchronous_commit = on
fsync = on
max_wal_size = 4GB
checkpoint_timeout = 30min
log_min_messages = warning
pacelc.worker_batch = $BATCH
CONF
bench_pg_start data "$PORT"
"${PSQL[@]}" -f "$SCRIPTS/setup.sql" >/dev/null

echo "pacelc queue benchmark: $("$BIN/postgres" --version), $NCPU CPUs"
echo "load: $PRODUCERS producers for ${DURATION}s; skiplocked: $CONSUMERS consumers, batch $BATCH, poll ${POLL_MS} ms; pacelc: 1 worker, batch $BATCH"
echo "idle: 1 client, one message every 20 ms, $IDLE_MESSAGES messages; synchronous_commit=on"
echo

# Echoes the number of messages design $1 has handled so far.
handled() {
	"${PSQL[@]}" -c "SELECT count(*) FROM sink WHERE design = '$1'"
}

# Waits until design $1 has handled $2 messages; fails after 300 s.
wait_handled() {
	local deadline=$(( $(date +%s) + 300 ))
	while [ "$(handled "$1")" -lt "$2" ]; do
		if [ "$(date +%s)" -gt "$deadline" ]; then
			echo "BENCHMARK FAILED: $1 handled $(handled "$1") of $2 messages" >&2
			exit 1
		fi
		sleep 0.02
	done
}

# Echoes "p50 p99" in ms of enqueue -> handler start for design $1.
latency() {
	"${PSQL[@]}" -F ' ' -c "
		SELECT round((percentile_cont(0.5) WITHIN GROUP (ORDER BY d))::numeric, 2),
			   round((percentile_cont(0.99) WITHIN GROUP (ORDER BY d))::numeric, 2)
		  FROM (SELECT extract(epoch FROM started - enq) * 1000 AS d FROM sink WHERE design = '$1') s"
}

# Starts the polling consumers of design $1 in the background: CONSUMERS
# for skiplocked, one for pgq.
start_consumers() {
	local n=$CONSUMERS
	[ "$1" = pgq ] && n=1
	"$BIN/pgbench" -n -M prepared -c "$n" -j "$(( n < NCPU ? n : NCPU ))" -T 100000 \
		-D batch="$BATCH" -D poll_ms="$POLL_MS" -f "$SCRIPTS/consume_$1.sql" \
		>"$DIR/consumers.out" 2>&1 &
	CONSUMER_PID=$!
	sleep 1
}

stop_consumers() {
	kill "$CONSUMER_PID" 2>/dev/null || true
	wait "$CONSUMER_PID" 2>/dev/null || true
	CONSUMER_PID=
}

# Runs design $1 under load, then idle; appends one line to $RESULTS.
RESULTS=$DIR/results
: >"$RESULTS"
run_design() {
	local d=$1 out t0 t1 n enq_rate proc_rate load_lat idle_lat
	"${PSQL[@]}" -c "TRUNCATE sink" -c "VACUUM ANALYZE" -c "CHECKPOINT"
	[ "$d" != pacelc ] && start_consumers "$d"
	out=$DIR/out.$d
	t0=$(date +%s.%N)
	"$BIN/pgbench" -n -M prepared -c "$PRODUCERS" -j "$(( PRODUCERS < NCPU ? PRODUCERS : NCPU ))" \
		-T "$DURATION" -f "$SCRIPTS/enqueue_$d.sql" >"$out" 2>&1 || { cat "$out" >&2; exit 1; }
	n=$(sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' "$out")
	enq_rate=$(sed -nE 's/^tps = ([0-9.]+) \(without.*/\1/p' "$out")
	wait_handled "$d" "$n"
	t1=$(date +%s.%N)
	proc_rate=$(echo "$n / ($t1 - $t0)" | bc -l)
	load_lat=$(latency "$d")

	"${PSQL[@]}" -c "TRUNCATE sink"
	sleep 1
	"$BIN/pgbench" -n -M prepared -c 1 -t "$IDLE_MESSAGES" -f "$SCRIPTS/enqueue_${d}_idle.sql" \
		>"$out.idle" 2>&1 || { cat "$out.idle" >&2; exit 1; }
	wait_handled "$d" "$IDLE_MESSAGES"
	idle_lat=$(latency "$d")
	[ "$d" != pacelc ] && stop_consumers
	echo "$d $n $enq_rate $proc_rate $load_lat $idle_lat" >>"$RESULTS"
	printf "  %-11s %8d msgs  enqueue %8.0f/s  processed %8.0f/s  load p50/p99 %s/%s ms  idle p50/p99 %s/%s ms\n" \
		"$d" "$n" "$enq_rate" "$proc_rate" $load_lat $idle_lat
}

# Warm-up, not measured: the first design to run would otherwise pay for
# the young cluster (new WAL segments zero-filled, cold caches, table growth).
"$BIN/pgbench" -n -M prepared -c "$PRODUCERS" -j "$(( PRODUCERS < NCPU ? PRODUCERS : NCPU ))" \
	-T "$(( DURATION < 5 ? DURATION : 5 ))" -f "$SCRIPTS/enqueue_skiplocked.sql" -f "$SCRIPTS/enqueue_pacelc.sql" >/dev/null 2>&1
"${PSQL[@]}" -c "TRUNCATE bq" -c "CHECKPOINT"
until [ "$("${PSQL[@]}" -c "SELECT count(*) FROM pacelc.messages WHERE state = 'ready'")" = 0 ]; do sleep 0.1; done
"${PSQL[@]}" -c "DELETE FROM pacelc.messages" -c "TRUNCATE sink" -c "CHECKPOINT"

run_design pacelc
run_design skiplocked
if [ "$("${PSQL[@]}" -c "SELECT count(*) FROM pg_available_extensions WHERE name = 'pgq'")" = 1 ]; then
	"${PSQL[@]}" -f "$SCRIPTS/setup_pgq.sql" >/dev/null
	run_design pgq
else
	echo "  pgq: skipped (extension pgq is not installed in $("$PG_CONFIG" --sharedir); Debian package postgresql-15-pgq3)"
	echo "pgq skipped - - - - - -" >>"$RESULTS"
fi

# The done/dead accounting must be exact: every pacelc message done once.
bad=$("${PSQL[@]}" -c "SELECT count(*) FROM pacelc.messages WHERE queue = 'bench' AND state <> 'done'")
[ "$bad" = 0 ] || { echo "BENCHMARK FAILED: $bad pacelc messages not done" >&2; exit 1; }

echo
echo "| design | messages | enqueued/s | processed/s | p50 / p99 under load (ms) | p50 / p99 idle (ms) |"
echo "|---|---:|---:|---:|---:|---:|"
while read -r d n e p l50 l99 i50 i99; do
	if [ "$n" = skipped ]; then
		echo "| $d | skipped (postgresql-15-pgq3 not installed) | | | | |"
		continue
	fi
	printf "| %s | %d | %.0f | %.0f | %s / %s | %s / %s |\n" "$d" "$n" "$e" "$p" "$l50" "$l99" "$i50" "$i99"
done <"$RESULTS"
# ratios against the SKIP LOCKED baseline, measured in this same run
base=$(awk '$1 == "skiplocked" {print $4}' "$RESULTS")
echo
awk -v base="$base" '$1 != "skiplocked" && $2 != "skipped" {
	printf "%s processed/s vs skiplocked: %.2f\n", $1, $4 / base }' "$RESULTS"
