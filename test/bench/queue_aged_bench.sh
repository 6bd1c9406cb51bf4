#!/usr/bin/env bash
# The queue beside a transaction of hours (issue 15, goal 3), without
# waiting hours.  Starts its own throw-away server (pacelc preloaded,
# WORKERS workers, pacelc.done_retention = 1s) and measures, side by side
# in one run, what the idle workers cost while a trickle of messages (one
# a second) is handled:
#
#   fresh   WINDOW_S seconds with no long transaction
#   aged    WINDOW_S seconds beside a REPEATABLE READ transaction behind
#           which DEAD messages were enqueued and handled and DEAD holds
#           with a ttl made and released (in one statement each: the
#           index entries that VACUUM may not remove while the transaction
#           stays open, as an hour at DEAD/3600 a second leaves; the holds'
#           expiries spread from an hour ago to ten minutes on)
#
# and prints the workers' CPU time and the entries they read from the due
# index (scans), the done index (purges) and the expiry index (hold
# expiry) in each window, and the ratio.  Before the safety nets were
# spaced, the aged window cost a worker a full scan of DEAD entries every
# 10 s and a full purge of them every minute; before the expiry floor,
# four expiry checks a second read the holds' entries.
#
# Usage: bash test/bench/queue_aged_bench.sh [--quick]   (as root)
# Environment: PG_CONFIG, DEAD=2000000, WINDOW_S=120, WORKERS=2,
#   PORT=55540.  --quick: DEAD=300000, WINDOW_S=30.
. "$(dirname "$0")/lib.sh"
bench_start "DEAD WINDOW_S WORKERS PORT" "$@"
bench_options "$@"
if [ $QUICK = 1 ]; then
	DEAD=${DEAD:-300000}
	WINDOW_S=${WINDOW_S:-30}
fi
DEAD=${DEAD:-2000000}
WINDOW_S=${WINDOW_S:-120}
WORKERS=${WORKERS:-2}
PORT=${PORT:-55540}

bench_dir qaged
LONG_PID=
bench_initdb data "$PORT" -U postgres <<CONF
shared_preload_libraries = 'pacelc'
shared_buffers = 512MB
max_wal_size = 8GB
checkpoint_timeout = 30min
log_min_messages = warning
pacelc.done_retention = 1
pacelc.worker_naptime = 1
pacelc.workers_per_database = $WORKERS
CONF
bench_pg_start data "$PORT"
"${PSQL[@]}" >/dev/null <<'SQL'
CREATE EXTENSION pacelc;
CREATE TABLE effects (n int);
CREATE ROLE bench_owner LOGIN;
GRANT pacelc_app TO bench_owner;
GRANT INSERT ON effects TO bench_owner;
CREATE FUNCTION h(p jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.effects VALUES ((p->>'n')::int);
END $$;
ALTER FUNCTION h(jsonb) OWNER TO bench_owner;
SET ROLE bench_owner;
SELECT pacelc.create_queue('q', 'public.h(jsonb)');
RESET ROLE;
SELECT pacelc.set_stock('ghost', 1);
SET ROLE bench_owner;
SELECT pacelc.enqueue('q', '{"n": 0}');
-- due in a day: the queue is never drained, so it is never truncated
SELECT pacelc.enqueue('q', '{"n": -1}', delay => '1 day');
SQL

echo "pacelc beside an aged transaction: $("$BIN/postgres" --version), $(nproc) CPUs"
echo "$WORKERS workers, one message a second, windows of $WINDOW_S s; aged: $DEAD dead messages behind a REPEATABLE READ transaction"
echo

# CPU time (ms) the pacelc workers have used so far
workers_ms() {
	local t=0 p
	for p in $("${PSQL[@]}" -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pacelc worker'"); do
		t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo $((t * 1000 / HZ))
}

index_read() {
	"${PSQL[@]}" -c "SELECT idx_tup_read FROM pg_stat_all_indexes WHERE indexrelid = 'pacelc.$1'::regclass"
}

# window NAME: one message a second for WINDOW_S s; prints and keeps
# "cpu_ms due_read done_read expiry_read"
window() {
	local c0 d0 p0 e0 c1 d1 p1 e1 i
	c0=$(workers_ms)
	d0=$(index_read messages_due_idx)
	p0=$(index_read messages_done_idx)
	e0=$(index_read reservation_data_expiry_idx)
	for i in $(seq 1 "$WINDOW_S"); do
		"${PSQL[@]}" -c "SELECT pacelc.enqueue('q', jsonb_build_object('n', $i))" >/dev/null
		sleep 1
	done
	sleep 2		# the workers' statistics reach the view
	c1=$(workers_ms)
	d1=$(index_read messages_due_idx)
	p1=$(index_read messages_done_idx)
	e1=$(index_read reservation_data_expiry_idx)
	printf "  %-6s workers' CPU %6d ms (%5.2f %% of one CPU)  entries read: due index %10d  done index %10d  expiry index %10d\n" \
		"$1" $((c1 - c0)) "$(echo "($c1 - $c0) / ($WINDOW_S * 10)" | bc -l)" $((d1 - d0)) $((p1 - p0)) $((e1 - e0))
	echo "$((c1 - c0)) $((d1 - d0)) $((p1 - p0)) $((e1 - e0))" >"$DIR/$1"
}

until [ "$("${PSQL[@]}" -c "SELECT count(*) FROM effects")" -ge 1 ]; do sleep 0.2; done
sleep 3
window fresh

# the long transaction: its snapshot taken, then DEAD messages enqueued and
# handled behind it (one statement; run_at an hour ago)
"$BIN/psql" -X -q -c "BEGIN ISOLATION LEVEL REPEATABLE READ" -c "SELECT count(*) FROM pg_class" \
	-c "SELECT pg_sleep(100000)" >/dev/null 2>&1 &
LONG_PID=$!
sleep 1
"${PSQL[@]}" <<SQL
BEGIN;
INSERT INTO pacelc.messages (queue, payload, run_at)
SELECT 'q', jsonb_build_object('n', i), now() - interval '1 hour' FROM generate_series(1, $DEAD) i;
UPDATE pacelc.messages SET state = 'done', done_at = clock_timestamp()
 WHERE queue = 'q' AND state = 'ready' AND run_at < now() - interval '30 minutes';
COMMIT;
BEGIN;
INSERT INTO pacelc.reservation_data (sku, qty, expires_at)
SELECT 'ghost', 1, now() - interval '1 hour' + interval '70 minutes' * (i::float8 / $DEAD)
  FROM generate_series(1, $DEAD) i;
UPDATE pacelc.reservation_data SET state = 'released', ended_at = now() WHERE sku = 'ghost';
COMMIT;
SQL
# purged after pacelc.done_retention: then their entries are dead in both indexes
until [ "$("${PSQL[@]}" -c "SELECT count(*) FROM pacelc.messages WHERE state = 'done'")" = 0 ]; do sleep 1; done
sleep 15	# past the first full scans after the purge
window aged
kill "$LONG_PID" 2>/dev/null || true

read -r fc fd fp fe <"$DIR/fresh"
read -r ac ad ap ae <"$DIR/aged"
echo
printf "aged vs fresh: workers' CPU %.2f; entries read per dead entry and minute (a full scan reads each once): due index %.2f, done index %.2f, expiry index %.2f\n" \
	"$(echo "$ac / ($fc + 1)" | bc -l)" "$(echo "($ad - $fd) * 60 / $WINDOW_S / $DEAD" | bc -l)" \
	"$(echo "($ap - $fp) * 60 / $WINDOW_S / $DEAD" | bc -l)" "$(echo "($ae - $fe) * 60 / $WINDOW_S / $DEAD" | bc -l)"
