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
#   pgmq         pgmq 1.5.1 (plain SQL, carried unmodified in
#                queue/pgmq-1.5.1.sql, PostgreSQL license), installed as a
#                script into this server only: producers call pgmq.send();
#                CONSUMERS consumers pgmq.read() BATCH messages, insert and
#                pgmq.delete() them in the same transaction
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
# and when idle (one client enqueuing one message every 20 ms), and the
# server's CPU time per message (every process of it: the producers' and
# consumers' backends, pacelc's workers), steadier than a rate when other
# work shares the machine.
#
# Before that, enqueue alone (no consumer running, pacelc's workers kept
# away with pacelc.databases): pacelc.enqueue() vs a plain INSERT of a row
# as wide as a message (table plain_insert, same columns, primary key only).
# The last lines print the ratios, with two bounds measured in the same
# run: the floor (SKIP LOCKED / pgmq: a plain table and the cheapest
# consumer) and the ceiling (pacelc's producers with no consumer at all /
# pgmq: pacelc's processing cannot pass it, its worker sharing the CPUs).
#
# --longtx adds the bloat test: per design, producers and consumers at full
# speed for LONGTX_S s without, then LONGTX_S s with a REPEATABLE READ
# transaction that has taken its snapshot held open on the same database;
# processing rate in both windows (messages handled / s), and the queue's
# on-disk size (tables + indexes, partitions included) at its baseline
# (drained, before), at the end of the long transaction, and how long after
# the transaction's end (producers stopped, backlog drained) it takes to be
# back within 10% (+1 MB) of the baseline (polled for RECOVER_S s).
#
# Usage (as root: installs missing packages, builds and installs pacelc, then
# reruns itself as user postgres; or directly as an unprivileged user):
#   bash test/bench/queue_bench.sh            # DURATION=10
#   bash test/bench/queue_bench.sh --quick    # DURATION=3, fewer idle samples
#   bash test/bench/queue_bench.sh --longtx   # plus the bloat test (LONGTX_S=120, RECOVER_S=60;
#                                             #   with --quick LONGTX_S=20, RECOVER_S=30)
#   STATEMENTS=1 bash test/bench/queue_bench.sh --longtx
#       # also prints, per window of the bloat test, the statements (the
#       # workers' included) that took the most time, from
#       # pg_stat_statements (track = all): what a long transaction slows
# Environment: PG_CONFIG (default /usr/lib/postgresql/15/bin/pg_config),
#   PRODUCERS=8, CONSUMERS=4, BATCH=100, POLL_MS=10, DURATION=10,
#   IDLE_MESSAGES=300, PORT=55500, LONGTX_S, RECOVER_S, DESIGNS (default
#   "pacelc skiplocked pgmq pgq"), LINGER_MS (pacelc.worker_linger in ms;
#   default: the server's, 1 ms).
. "$(dirname "$0")/lib.sh"
# the PgQ contender, benchmark only (the tests do not need it)
BENCH_EXTRA_DEBS=postgresql-15-pgq3 \
	bench_start "PRODUCERS CONSUMERS BATCH POLL_MS DURATION IDLE_MESSAGES PORT LONGTX_S RECOVER_S DESIGNS LINGER_MS" "$@"
LONGTX=0
args=()
for a in "$@"; do
	if [ "$a" = --longtx ]; then LONGTX=1; else args+=("$a"); fi
done
bench_options "${args[@]}"
if [ $QUICK = 1 ]; then
	DURATION=${DURATION:-3}
	IDLE_MESSAGES=${IDLE_MESSAGES:-100}
	LONGTX_S=${LONGTX_S:-20}
	RECOVER_S=${RECOVER_S:-30}
fi
LONGTX_S=${LONGTX_S:-120}
RECOVER_S=${RECOVER_S:-60}
DESIGNS=${DESIGNS:-pacelc skiplocked pgmq pgq}
DURATION=${DURATION:-10}
IDLE_MESSAGES=${IDLE_MESSAGES:-300}
PRODUCERS=${PRODUCERS:-8}
CONSUMERS=${CONSUMERS:-4}
BATCH=${BATCH:-100}
POLL_MS=${POLL_MS:-10}
PORT=${PORT:-55500}
SCRIPTS=$(cd "$(dirname "$0")/queue" && pwd)
NCPU=$(nproc)

bench_dir qbench		# also kills consumers, producers, a long transaction left running
CONSUMER_PID=
LONG_PID=
PROD_PID=
STATEMENTS=${STATEMENTS:-0}
bench_initdb data "$PORT" -U postgres <<CONF
shared_preload_libraries = 'pacelc$( [ "$STATEMENTS" = 1 ] && echo ,pg_stat_statements)'
$( [ "$STATEMENTS" = 1 ] && echo "pg_stat_statements.track = all" )
max_connections = 100
shared_buffers = 256MB
synchronous_commit = on
fsync = on
max_wal_size = 4GB
checkpoint_timeout = 30min
log_min_messages = warning
pacelc.worker_batch = $BATCH
pacelc.done_retention = 1
pacelc.worker_naptime = 1
${LINGER_MS:+pacelc.worker_linger = ${LINGER_MS}ms}
autovacuum_naptime = 10
CONF
bench_pg_start data "$PORT"
"${PSQL[@]}" -f "$SCRIPTS/setup.sql" >/dev/null

echo "pacelc queue benchmark: $("$BIN/postgres" --version), $NCPU CPUs"
echo "load: $PRODUCERS producers for ${DURATION}s; skiplocked, pgmq: $CONSUMERS consumers, batch $BATCH, poll ${POLL_MS} ms; pacelc: its worker pool, batch $BATCH, linger ${LINGER_MS:-1 (default)} ms"
echo "idle: 1 client, one message every 20 ms, $IDLE_MESSAGES messages; synchronous_commit=on; pacelc.done_retention = 1s"
echo

has_design() {
	case " $DESIGNS " in *" $1 "*) return 0 ;; esac
	return 1
}

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

# Bytes on disk of design $1's queue: tables, indexes, TOAST, partitions.
qsize() {
	local rels
	case $1 in
		pacelc) rels="'pacelc.messages'" ;;
		skiplocked) rels="'bq'" ;;
		pgmq) rels="'pgmq.q_bench', 'pgmq.a_bench'" ;;
	esac
	"${PSQL[@]}" -c "
		SELECT coalesce(sum(pg_total_relation_size(x)), 0)
		  FROM unnest(ARRAY[$rels]::regclass[]) r,
			   LATERAL (SELECT r AS x WHERE NOT EXISTS (SELECT FROM pg_partition_tree(r))
						UNION ALL SELECT t.relid FROM pg_partition_tree(r) t WHERE t.isleaf) s"
}

# Starts the polling consumers of design $1 in the background: CONSUMERS
# for skiplocked and pgmq, one for pgq; nothing for pacelc (its workers).
start_consumers() {
	local n=$CONSUMERS
	[ "$1" = pacelc ] && return 0
	[ "$1" = pgq ] && n=1
	"$BIN/pgbench" -n -M prepared -c "$n" -j "$(( n < NCPU ? n : NCPU ))" -T 100000 \
		-D batch="$BATCH" -D poll_ms="$POLL_MS" -f "$SCRIPTS/consume_$1.sql" \
		>"$DIR/consumers.out" 2>&1 &
	CONSUMER_PID=$!
	sleep 1
}

stop_consumers() {
	[ -z "$CONSUMER_PID" ] && return 0
	kill "$CONSUMER_PID" 2>/dev/null || true
	wait "$CONSUMER_PID" 2>/dev/null || true
	CONSUMER_PID=
}

# Runs pgbench with PRODUCERS clients for $2 s on script $1 (foreground).
produce() {
	"$BIN/pgbench" -n -M prepared -c "$PRODUCERS" -j "$(( PRODUCERS < NCPU ? PRODUCERS : NCPU ))" \
		-T "$2" -f "$1"
}

# pacelc's workers leave (pacelc.databases names no database) or come back.
pacelc_workers() {
	if [ "$1" = off ]; then
		"${PSQL[@]}" -c "ALTER SYSTEM SET pacelc.databases = 'no_such_database'" -c "SELECT pg_reload_conf()" >/dev/null
		until [ "$("${PSQL[@]}" -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pacelc worker'")" = 0 ]; do
			sleep 0.1
		done
	else
		"${PSQL[@]}" -c "ALTER SYSTEM RESET pacelc.databases" -c "SELECT pg_reload_conf()" >/dev/null
	fi
}

# pacelc: waits until no message of the bench queue is left to handle.
pacelc_drained() {
	until [ "$("${PSQL[@]}" -c "SELECT count(*) FROM pacelc.messages WHERE state = 'ready'")" = 0 ]; do sleep 0.1; done
}

# Runs design $1 under load, then idle; appends one line to $RESULTS.
RESULTS=$DIR/results
: >"$RESULTS"
run_design() {
	local d=$1 out t0 t1 n enq_rate proc_rate load_lat idle_lat c0 cpu w0 wal
	"${PSQL[@]}" -c "TRUNCATE sink" -c "VACUUM ANALYZE" -c "CHECKPOINT"
	start_consumers "$d"
	out=$DIR/out.$d
	c0=$(bench_server_ticks "$DIR/data")
	w0=$("${PSQL[@]}" -c "SELECT pg_current_wal_insert_lsn()")
	t0=$(date +%s.%N)
	produce "$SCRIPTS/enqueue_$d.sql" "$DURATION" >"$out" 2>&1 || { cat "$out" >&2; exit 1; }
	n=$(sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' "$out")
	enq_rate=$(sed -nE 's/^tps = ([0-9.]+) \(without.*/\1/p' "$out")
	wait_handled "$d" "$n"
	t1=$(date +%s.%N)
	# server CPU (producers' and consumers' backends, workers) per message
	cpu=$(awk -v d="$(( $(bench_server_ticks "$DIR/data") - c0 ))" -v hz="$HZ" -v n="$n" \
		'BEGIN { printf "%.1f", (n > 0) ? (d / hz * 1e6 / n) : 0 }')
	proc_rate=$(echo "$n / ($t1 - $t0)" | bc -l)
	# WAL per message: enqueue, processing, the handler's insert, commits
	wal=$("${PSQL[@]}" -c "SELECT round((pg_current_wal_insert_lsn() - '$w0'::pg_lsn) / greatest($n, 1))")
	load_lat=$(latency "$d")

	"${PSQL[@]}" -c "TRUNCATE sink"
	sleep 1
	"$BIN/pgbench" -n -M prepared -c 1 -t "$IDLE_MESSAGES" -f "$SCRIPTS/enqueue_${d}_idle.sql" \
		>"$out.idle" 2>&1 || { cat "$out.idle" >&2; exit 1; }
	wait_handled "$d" "$IDLE_MESSAGES"
	idle_lat=$(latency "$d")
	stop_consumers
	echo "$d $n $enq_rate $proc_rate $load_lat $idle_lat $cpu $wal" >>"$RESULTS"
	printf "  %-11s %8d msgs  enqueue %8.0f/s  processed %8.0f/s  load p50/p99 %s/%s ms  idle p50/p99 %s/%s ms  server CPU %s us/msg  WAL %s B/msg\n" \
		"$d" "$n" "$enq_rate" "$proc_rate" $load_lat $idle_lat "$cpu" "$wal"
}

# The bloat test for design $1 (see the header); appends to $LONGRESULTS.
LONGRESULTS=$DIR/longresults
: >"$LONGRESULTS"
long_window() {
	# $1 design, $2 seconds, $3 "long" to hold a long transaction open; echoes msgs/s handled
	local d=$1 secs=$2 h0 h1 t0 t1
	if [ "$3" = long ]; then
		"${PSQL[@]}" -c "BEGIN ISOLATION LEVEL REPEATABLE READ" -c "SELECT count(*) FROM pg_class" \
			-c "SELECT pg_sleep($secs)" -c "COMMIT" >/dev/null &
		LONG_PID=$!
		sleep 0.2
	fi
	[ "$STATEMENTS" = 1 ] && "${PSQL[@]}" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" \
		-c "SELECT pg_stat_statements_reset()" >/dev/null 2>&1
	produce "$SCRIPTS/enqueue_$d.sql" "$secs" >"$DIR/long.$d" 2>&1 &
	PROD_PID=$!
	sleep 1
	h0=$(handled "$d"); t0=$(date +%s.%N)
	sleep $(( secs - 2 ))
	h1=$(handled "$d"); t1=$(date +%s.%N)
	[ "$STATEMENTS" = 1 ] && "${PSQL[@]}" -F ' | ' -c "
		SELECT round(total_exec_time), calls, round((total_exec_time / calls)::numeric, 3),
			   left(regexp_replace(query, '\s+', ' ', 'g'), 90)
		  FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 8" >"$DIR/statements.$d.$3"
	wait "$PROD_PID" || { cat "$DIR/long.$d" >&2; exit 1; }
	PROD_PID=
	if [ "$3" = long ]; then
		wait "$LONG_PID" || true
		LONG_PID=
	fi
	echo "($h1 - $h0) / ($t1 - $t0)" | bc -l
}

# Waits until design $1 has handled everything its producers committed.
drain() {
	local d=$1 deadline=$(( $(date +%s) + 300 ))
	if [ "$d" = pacelc ]; then
		pacelc_drained
		return
	fi
	while [ "$("${PSQL[@]}" -c "SELECT count(*) FROM $( [ "$d" = pgmq ] && echo pgmq.q_bench || echo bq)")" != 0 ]; do
		[ "$(date +%s)" -gt "$deadline" ] && { echo "BENCHMARK FAILED: $d did not drain" >&2; exit 1; }
		sleep 0.1
	done
}

run_longtx() {
	local d=$1 r_plain r_long base peak now t recovered=-1 start
	"${PSQL[@]}" -c "TRUNCATE sink" -c "CHECKPOINT"
	start_consumers "$d"
	r_plain=$(long_window "$d" "$LONGTX_S" plain)
	drain "$d"
	sleep 2
	base=$(qsize "$d")
	r_long=$(long_window "$d" "$LONGTX_S" long)
	peak=$(qsize "$d")
	start=$(date +%s.%N)
	drain "$d"
	while :; do
		now=$(qsize "$d")
		t=$(echo "$(date +%s.%N) - $start" | bc -l)
		if [ "$now" -le $(( base + base / 10 + 1048576 )) ]; then
			recovered=$t
			break
		fi
		[ "$(echo "$t > $RECOVER_S" | bc)" = 1 ] && break
		sleep 1
	done
	stop_consumers
	echo "$d $r_plain $r_long $base $peak $now $recovered" >>"$LONGRESULTS"
	printf "  %-11s processed %6.0f/s alone, %6.0f/s beside the long transaction (%.2fx); size %s -> %s -> %s\n" \
		"$d" "$r_plain" "$r_long" "$(echo "$r_long / $r_plain" | bc -l)" \
		"$(( base / 1024 )) kB" "$(( peak / 1024 )) kB" "$(( now / 1024 )) kB"
	if [ "$STATEMENTS" = 1 ]; then
		for w in plain long; do
			echo "    $d, window $w: ms in all | calls | ms per call | statement"
			sed 's/^/      /' "$DIR/statements.$d.$w"
		done
	fi
}

"${PSQL[@]}" -f "$SCRIPTS/pgmq-1.5.1.sql" -f "$SCRIPTS/setup_pgmq.sql" >/dev/null

# Warm-up, not measured: the first design to run would otherwise pay for
# the young cluster (new WAL segments zero-filled, cold caches, table growth).
produce "$SCRIPTS/enqueue_skiplocked.sql" "$(( DURATION < 5 ? DURATION : 5 ))" >/dev/null 2>&1
produce "$SCRIPTS/enqueue_pacelc.sql" "$(( DURATION < 5 ? DURATION : 5 ))" >/dev/null 2>&1
"${PSQL[@]}" -c "TRUNCATE bq" -c "CHECKPOINT"
pacelc_drained
# both tables start empty: TRUNCATE, as pacelc's worker does to a drained
# table (a DELETE left the warm-up's rows dead in pacelc.messages only)
"${PSQL[@]}" -c "TRUNCATE pacelc.messages" -c "TRUNCATE sink" -c "CHECKPOINT"

# enqueue alone: pacelc.enqueue() vs the plain INSERT, no consumer running
pacelc_workers off
# alternating, three short windows each: the machine's load changes less
# between neighbouring windows than over two long ones
enq_pacelc=0
enq_insert=0
declare -A enq_ticks=([pacelc]=0 [insert]=0) enq_n=([pacelc]=0 [insert]=0)
for r in 1 2 3; do
	for d in pacelc insert; do
		c0=$(bench_server_ticks "$DIR/data")
		produce "$SCRIPTS/enqueue_$d.sql" "$(( (DURATION + 2) / 3 ))" >"$DIR/enq.$d" 2>&1 ||
			{ cat "$DIR/enq.$d" >&2; exit 1; }
		enq_ticks[$d]=$(( enq_ticks[$d] + $(bench_server_ticks "$DIR/data") - c0 ))
		enq_n[$d]=$(( enq_n[$d] + $(sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' "$DIR/enq.$d") ))
		tps=$(sed -nE 's/^tps = ([0-9.]+) \(without.*/\1/p' "$DIR/enq.$d")
		if [ $d = pacelc ]; then
			enq_pacelc=$(echo "$enq_pacelc + $tps / 3" | bc -l)
		else
			enq_insert=$(echo "$enq_insert + $tps / 3" | bc -l)
		fi
	done
done
# server CPU per transaction (us)
enq_cpu_pacelc=$(echo "${enq_ticks[pacelc]} / $HZ * 1000000 / ${enq_n[pacelc]}" | bc -l)
enq_cpu_insert=$(echo "${enq_ticks[insert]} / $HZ * 1000000 / ${enq_n[insert]}" | bc -l)
printf "  enqueue alone: pacelc.enqueue %.0f/s (server CPU %.0f us each), plain INSERT %.0f/s (%.0f us)\n" \
	"$enq_pacelc" "$enq_cpu_pacelc" "$enq_insert" "$enq_cpu_insert"
pacelc_workers on
pacelc_drained
"${PSQL[@]}" -c "TRUNCATE plain_insert" -c "TRUNCATE sink" -c "CHECKPOINT"

for d in $DESIGNS; do
	if [ "$d" = pgq ]; then
		if [ "$("${PSQL[@]}" -c "SELECT count(*) FROM pg_available_extensions WHERE name = 'pgq'")" = 1 ]; then
			"${PSQL[@]}" -f "$SCRIPTS/setup_pgq.sql" >/dev/null
			run_design pgq
		else
			echo "  pgq: skipped (extension pgq is not installed in $("$PG_CONFIG" --sharedir); Debian package postgresql-15-pgq3)"
			echo "pgq skipped - - - - - - - -" >>"$RESULTS"
		fi
	else
		run_design "$d"
	fi
done

if [ $LONGTX = 1 ]; then
	echo
	echo "bloat test: ${LONGTX_S}s alone, then ${LONGTX_S}s beside a REPEATABLE READ transaction; size back within ${RECOVER_S}s?"
	for d in $DESIGNS; do
		[ "$d" = pgq ] && continue
		run_longtx "$d"
	done
fi

# The done/dead accounting must be exact: every pacelc message done once.
if has_design pacelc; then
	bad=$("${PSQL[@]}" -c "SELECT count(*) FROM pacelc.messages WHERE queue = 'bench' AND state <> 'done'")
	[ "$bad" = 0 ] || { echo "BENCHMARK FAILED: $bad pacelc messages not done" >&2; exit 1; }
fi

echo
echo "| design | messages | enqueued/s | processed/s | p50 / p99 under load (ms) | p50 / p99 idle (ms) | server CPU per message (us) | WAL per message (bytes) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
while read -r d n e p l50 l99 i50 i99 c w; do
	if [ "$n" = skipped ]; then
		echo "| $d | skipped (postgresql-15-pgq3 not installed) | | | | | | |"
		continue
	fi
	printf "| %s | %d | %.0f | %.0f | %s / %s | %s / %s | %s | %s |\n" "$d" "$n" "$e" "$p" "$l50" "$l99" "$i50" "$i99" "$c" "$w"
done <"$RESULTS"
echo
printf "enqueue alone vs plain INSERT of the same width: %.2f (%.0f/s vs %.0f/s); server CPU per call, INSERT / enqueue: %.2f\n" \
	"$(echo "$enq_pacelc / $enq_insert" | bc -l)" "$enq_pacelc" "$enq_insert" \
	"$(echo "$enq_cpu_insert / $enq_cpu_pacelc" | bc -l)"
# ratios measured in this same run; CPU per message is the steadier one on
# a shared machine (a rate also measures what else ran meanwhile)
awk -v enq="$enq_pacelc" '$1 != "skipped" && $2 != "skipped" { p[$1] = $4; c[$1] = $9; w[$1] = $10 }
	END {
		split("skiplocked pgmq pgq", o, " ");
		for (i = 1; i <= 3; i++)
			if ("pacelc" in p && o[i] in p)
				printf "pacelc vs %s: processed/s %.2f, server CPU per message %s / pacelc: %.2f, WAL per message %s / pacelc: %.2f\n",
					o[i], p["pacelc"] / p[o[i]], o[i], c[o[i]] / c["pacelc"], o[i], w[o[i]] / w["pacelc"];
		# how far any design could get past pgmq here: a plain table, the
		# cheapest consumer (no retries, no dead letters, no leases)
		if ("skiplocked" in p && "pgmq" in p)
			printf "floor: skiplocked vs pgmq: processed/s %.2f\n", p["skiplocked"] / p["pgmq"];
		# how far pacelc could get past pgmq here: its producers alone, with
		# no consumer at all (its worker takes a share of the same CPUs)
		if ("pacelc" in p && "pgmq" in p && enq > 0)
			printf "ceiling: pacelc.enqueue alone (no consumer) vs pgmq processed/s: %.2f; pacelc processed / its enqueue alone: %.2f\n",
				enq / p["pgmq"], p["pacelc"] / enq;
	}' "$RESULTS"
if [ $LONGTX = 1 ]; then
	echo
	echo "| design (bloat test, ${LONGTX_S}s) | processed/s alone | beside the long transaction | ratio | size baseline | at its end | back to baseline after it ends |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
	while read -r d ra rl base peak now rec; do
		if [ "$rec" = -1 ]; then
			rec="not within ${RECOVER_S}s ($(( now / 1024 )) kB)"
		else
			rec=$(printf "%.0f s" "$rec")
		fi
		printf "| %s | %.0f | %.0f | %.2f | %d kB | %d kB | %s |\n" "$d" "$ra" "$rl" \
			"$(echo "$rl / $ra" | bc -l)" $(( base / 1024 )) $(( peak / 1024 )) "$rec"
	done <"$LONGRESULTS"
fi
