# A worker takes the queue it found as the only candidate again for a
# while without the pick statement (fe35605).  What that must not cost:
#  - fairness with a pool of one: a queue that such a reused batch found
#    drained is not left out for the rest of the round (before the fix, a
#    backlog in another queue then held its new messages back until the
#    backlog was gone);
#  - a queue whose handler is removed under load is left alone from then
#    on (a consumer queue);
#  - the siblings still join a queue whose concurrency is above 1, and no
#    more workers than that run its handler at once.
use strict;
use warnings FATAL => 'all';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib "$FindBin::RealBin/../perl";
use PacelcTest;

my $node = pacelc_node('reuse', conf => qq{
max_worker_processes = 8
pacelc.launcher_naptime = 1s
pacelc.worker_naptime = 1s
pacelc.workers_per_database = 1
log_statement = none
});

$node->safe_psql('postgres', 'CREATE EXTENSION pacelc;' . shop_role_sql() . q{
	CREATE TABLE seen (q text, n int, pid int, enqueued_at timestamptz,
	                   started timestamptz, at timestamptz DEFAULT clock_timestamp());
	GRANT INSERT ON seen TO regress_pacelc_shop;
	-- "hot": a message with "spawn" enqueues a backlog into "bulk" from
	-- its handler (a saga step that fans out), in the batch's transaction
	CREATE FUNCTION hot(p jsonb) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		IF p ? 'spawn' THEN
			PERFORM pacelc.enqueue('bulk', jsonb_build_object('q', 'bulk', 'n', i))
			   FROM generate_series(1, (p->>'spawn')::int) i;
		END IF;
		INSERT INTO public.seen (q, n, enqueued_at) VALUES ('hot', (p->>'n')::int, (p->>'t')::timestamptz);
	END $$;
	-- I/O-bound work: 10 ms a message
	CREATE FUNCTION slow(p jsonb) RETURNS void LANGUAGE plpgsql AS $$
	DECLARE t0 timestamptz := clock_timestamp();
	BEGIN
		PERFORM pg_sleep(0.01);
		INSERT INTO public.seen (q, n, pid, started) VALUES (p->>'q', (p->>'n')::int, pg_backend_pid(), t0);
	END $$;
	CREATE FUNCTION noop(p jsonb) RETURNS void LANGUAGE plpgsql AS $$ BEGIN END $$;
	SET ROLE regress_pacelc_shop;
	SELECT pacelc.create_queue('hot', 'hot(jsonb)');
	SELECT pacelc.create_queue('bulk', 'slow(jsonb)');
	SELECT pacelc.create_queue('wide', 'slow(jsonb)', concurrency => 3);
});
$node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pacelc worker'})
  or die 'worker did not start';

# --- pool of one: a drained queue is not left out for the round --------
# The worker picks "hot" as the only candidate, its handler leaves 400
# messages (4 s of work) in "bulk", and the next batch takes "hot" again
# without a pick and finds it empty.  Then "hot" gets a message.
$node->safe_psql('postgres', q{SET ROLE regress_pacelc_shop;
	SELECT pacelc.enqueue('hot', jsonb_build_object('n', 0, 'spawn', 400, 't', clock_timestamp()))});
$node->poll_query_until('postgres', q{SELECT count(*) >= 10 FROM seen WHERE q = 'bulk'})
  or die 'bulk not started';
for my $i (1 .. 3)
{
	$node->safe_psql('postgres', qq{SET ROLE regress_pacelc_shop;
		SELECT pacelc.enqueue('hot', jsonb_build_object('n', $i, 't', clock_timestamp()))});
	usleep(100_000);
}
ok($node->poll_query_until('postgres', q{SELECT count(*) = 4 FROM seen WHERE q = 'hot'}),
	'hot messages handled');
ok($node->poll_query_until('postgres', q{SELECT count(*) = 400 FROM seen WHERE q = 'bulk'}),
	'bulk drained');
my ($max_ms, $bulk_after) = split /\|/, $node->safe_psql('postgres', q{
	SELECT round(max(extract(epoch FROM at - enqueued_at) * 1000)::numeric, 1),
	       (SELECT count(*) FROM seen b WHERE b.q = 'bulk'
	           AND b.at > (SELECT max(h.at) FROM seen h WHERE h.q = 'hot'))
	  FROM seen WHERE q = 'hot' AND n > 0});
note "pool of one, hot queue beside a 4 s backlog: enqueue to handled max $max_ms ms, "
  . "$bulk_after of 400 backlog messages handled after the last hot one";
# Round-robin: a hot message waits for one batch of the backlog (about
# 200 ms, 20 messages); left out for the round, it waited for all of it.
cmp_ok($bulk_after, '>=', 200, 'the hot queue is served while the backlog lasts');
cmp_ok($max_ms, '<', 1500, 'hot message waited for a batch, not for the backlog');

# --- a hot queue turned into a consumer queue: untouched from then on --
# (the worker takes it again without the pick, which looks for a handler)
$node->safe_psql('postgres', q{SET ROLE regress_pacelc_shop; SELECT pacelc.create_queue('turn', 'noop(jsonb)')});
my $load = start_pgbench($node, q{SELECT pacelc.enqueue('turn', '{}');}, clients => 2, seconds => 4);
$node->poll_query_until('postgres', q{
	SELECT count(*) > 100 FROM pacelc.messages WHERE queue = 'turn' AND state = 'done'})
  or die 'turn not served';
my $turned = $node->safe_psql('postgres', q{SET ROLE regress_pacelc_shop;
	SELECT pacelc.alter_queue('turn', drop_handler => true);
	SELECT clock_timestamp()});
$load->finish;
my ($late_done, $touched, $left) = split /\|/, $node->safe_psql('postgres', qq{
	SELECT count(*) FILTER (WHERE done_at > '$turned'::timestamptz + interval '1 s'),
	       count(*) FILTER (WHERE state = 'ready' AND (attempts > 0 OR leased_until IS NOT NULL)),
	       count(*) FILTER (WHERE state = 'ready')
	  FROM pacelc.messages WHERE queue = 'turn'});
note "queue turned into a consumer queue under load: $left messages left for consumers";
cmp_ok($left, '>', 0, 'messages enqueued after the handler was removed stay');
is($late_done, '0', 'none handled after the handler was removed (beyond the batch then running)');
is($touched, '0', 'none attempted or leased by the worker');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pacelc.dequeue('turn', 1000000)}), $left,
	'a consumer gets every one of them');

# --- concurrency 3 on a pool of 3: the siblings join, at most 3 at once
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET pacelc.workers_per_database = 3; SELECT pg_reload_conf()});
$node->poll_query_until('postgres', q{
	SELECT count(*) = 3 FROM pg_stat_activity WHERE backend_type = 'pacelc worker'})
  or die 'pool did not grow';
$node->safe_psql('postgres', q{SET ROLE regress_pacelc_shop;
	SELECT pacelc.enqueue('wide', jsonb_build_object('q', 'wide', 'n', i)) FROM generate_series(1, 600) i});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 600 FROM seen WHERE q = 'wide'}),
	'wide queue drained');
my ($pids, $overlap) = split /\|/, $node->safe_psql('postgres', q{
	SELECT (SELECT count(DISTINCT pid) FROM seen WHERE q = 'wide'),
	       (SELECT max(n) FROM (SELECT count(*) AS n FROM seen a JOIN seen b
	                              ON b.q = 'wide' AND b.started <= a.started AND b.at > a.started
	                            WHERE a.q = 'wide' GROUP BY a.ctid) s)});
note "concurrency 3, pool of 3: $pids workers handled the queue, at most $overlap at once";
is($pids, '3', 'every worker of the pool joined the queue');
cmp_ok($overlap, '<=', 3, 'never more handlers at once than the concurrency');

done_testing();
