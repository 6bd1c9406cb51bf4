# The pool of workers and the launcher (issue 12):
#  - with one queue's handler stuck, another queue of the same database is
#    handled at once (p50 under 100 ms, p99 under 500 ms), and another
#    database is unaffected;
#  - a queue keeps its first attempts in order (concurrency 1);
#  - 12 databases without pacelc and a database that cannot get a worker
#    on 8 worker slots: slot exhaustion logged once per naptime, enqueues
#    there cause no storm, and databases without pacelc are remembered;
#  - a database owner who is no superuser can drop their database.
use strict;
use warnings FATAL => 'all';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib "$FindBin::RealBin/../perl";
use PacelcTest;

my $node = pacelc_node('pool', conf => qq{
max_worker_processes = 8
pacelc.launcher_naptime = 1s
pacelc.worker_naptime = 1s
pacelc.handler_timeout = 30s
pacelc.workers_per_database = 2
log_statement = none
});

my $setup = q{
	CREATE EXTENSION pacelc;
	DO $$ BEGIN CREATE ROLE regress_pacelc_shop; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
	GRANT USAGE ON SCHEMA pacelc TO regress_pacelc_shop;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pacelc TO regress_pacelc_shop;
	CREATE TABLE seen (q text, n int, enqueued_at timestamptz, at timestamptz DEFAULT clock_timestamp(),
	                   seq bigserial);
	GRANT INSERT ON seen TO regress_pacelc_shop;
	GRANT USAGE ON SEQUENCE seen_seq_seq TO regress_pacelc_shop;
	CREATE FUNCTION record_it(p jsonb) RETURNS void LANGUAGE sql AS $$
		INSERT INTO seen (q, n, enqueued_at) VALUES (p->>'q', (p->>'n')::int, (p->>'t')::timestamptz) $$;
	-- stuck until the test opens the gate (a fixed sleep could end while
	-- the test still measures on a slow machine); cancelled after
	-- handler_timeout, it fails and is retried, never done before
	CREATE TABLE gate (open boolean);
	GRANT SELECT ON gate TO regress_pacelc_shop;
	CREATE FUNCTION stuck(p jsonb) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		WHILE NOT EXISTS (SELECT 1 FROM public.gate WHERE open) LOOP
			PERFORM pg_sleep(0.05);
		END LOOP;
	END $$;
	SET ROLE regress_pacelc_shop;
	SELECT pacelc.create_queue('fast', 'record_it(jsonb)');
	SELECT pacelc.create_queue('ordered', 'record_it(jsonb)');
	SELECT pacelc.create_queue('stuck', 'stuck(jsonb)');
};
$node->safe_psql('postgres', $setup);
$node->safe_psql('postgres', q{CREATE DATABASE shop2});
$node->safe_psql('shop2', $setup);
$node->poll_query_until('postgres', q{
	SELECT count(*) = 4 FROM pg_stat_activity WHERE backend_type = 'pacelc worker'})
  or die 'pools did not start';

# --- one queue stuck, another queue handled at once -------------------
$node->safe_psql('postgres', q{
	SET ROLE regress_pacelc_shop;
	SELECT pacelc.enqueue('stuck', '{}') FROM generate_series(1, 3);
});
usleep(300_000);
for my $i (1 .. 60)
{
	for my $db ('postgres', 'shop2')
	{
		$node->safe_psql($db, qq{SET ROLE regress_pacelc_shop;
			SELECT pacelc.enqueue('fast', jsonb_build_object('q', 'fast', 'n', $i, 't', clock_timestamp()))});
	}
	usleep(20_000);
}
for my $db ('postgres', 'shop2')
{
	ok($node->poll_query_until($db, q{SELECT count(*) = 60 FROM seen WHERE q = 'fast'}),
		"$db: every fast message handled");
	my ($p50, $p99, $max) = split /\|/, $node->safe_psql($db, q{
		SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
		       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1),
		       round(max(ms)::numeric, 1)
		  FROM (SELECT extract(epoch FROM at - enqueued_at) * 1000 AS ms FROM seen WHERE q = 'fast') s});
	my $what = $db eq 'postgres' ? 'same database as the stuck queue' : 'another database';
	# Blocked behind the stuck handler, a message would wait for the gate;
	# without a wake-up, for the 1 s naptime (p50 about 500 ms).  The
	# median proves both; the tail bound leaves room for a busy 2-core
	# machine (p99 of 60 samples is about the slowest one).
	cmp_ok($p50, '<', 100, "$what: enqueue to handled p50 $p50 ms");
	cmp_ok($p99, '<', 500, "$what: enqueue to handled p99 $p99 ms");
	note "with queue \"stuck\" blocked, $what: p50 $p50 ms, p99 $p99 ms, max $max ms";
}
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pacelc.messages WHERE queue = 'stuck' AND state = 'done'}), '0',
	'the stuck queue was still stuck meanwhile');
# open the gate: the stuck messages end, their worker is free again
$node->safe_psql('postgres', q{INSERT INTO gate VALUES (true)});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 3 FROM pacelc.messages WHERE queue = 'stuck' AND state = 'done'}),
	'once the gate opens the stuck queue drains');

# --- per queue order (concurrency 1) ---------------------------------
$node->safe_psql('postgres', q{
	SET ROLE regress_pacelc_shop;
	SELECT pacelc.enqueue('ordered', jsonb_build_object('q', 'ordered', 'n', i)) FROM generate_series(1, 300) i;
});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 300 FROM seen WHERE q = 'ordered'}),
	'ordered queue handled');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT n, lag(n) OVER (ORDER BY seq) AS prev FROM seen WHERE q = 'ordered') s
	 WHERE n < prev}), '0', 'a queue\'s messages are handled in order (first attempts, concurrency 1)');

# --- a database owner who is no superuser drops their database ---------
$node->safe_psql('postgres', q{
	CREATE ROLE regress_pacelc_owner LOGIN CREATEDB;
	SET ROLE regress_pacelc_owner;
	CREATE DATABASE dropme;
});
$node->safe_psql('dropme', q{CREATE EXTENSION pacelc});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) >= 1 FROM pg_stat_activity WHERE backend_type = 'pacelc worker' AND datname = 'dropme'}),
	'dropme has a worker');
my ($rc, $out, $err) = $node->psql('postgres', q{SET ROLE regress_pacelc_owner; DROP DATABASE dropme});
is($rc, 0, "its owner (no superuser) drops it while the worker is there ($err)");
$node->safe_psql('postgres', q{DROP ROLE regress_pacelc_owner});

# --- 12 databases without pacelc, and no slot free ---------------------
# the pools of postgres and shop2 + the launcher take every slot first (the
# logical replication launcher has the eighth)
$node->append_conf('postgresql.conf', 'pacelc.workers_per_database = 4');
$node->reload;
$node->poll_query_until('postgres', q{
	SELECT count(*) = 7 FROM pg_stat_activity WHERE backend_type IN ('pacelc worker', 'pacelc launcher')})
  or die 'the pools did not grow';
$node->safe_psql('postgres', "CREATE DATABASE empty$_") for 1 .. 12;
$node->safe_psql('postgres', q{CREATE DATABASE noslot});
$node->safe_psql('noslot', $setup);
my $log_from = -s $node->logfile;
my $t0 = time;
$node->pgbench('-n -c 4 -j 2 -T 5', 0, [qr/actually processed/], [],
	'enqueue load into a database without a worker slot',
	{ 'enqueue' => "SELECT pacelc.enqueue('fast', jsonb_build_object('q', 'fast', 'n', 0, 't', clock_timestamp()));\n" },
	'noslot');
my $seconds = time - $t0;
my $log = slurp_file($node->logfile, $log_from);
my $exhausted = () = $log =~ /could not start a worker/g;
my $enqueued = $node->safe_psql('noslot', q{SELECT count(*) FROM pacelc.messages});
ok($enqueued > 100, "$enqueued enqueues in a database without a worker");
cmp_ok($exhausted, '<=', int($seconds) + 2,
	sprintf('slot exhaustion logged %d times in %.1f s (launcher_naptime 1 s)', $exhausted, $seconds));
note sprintf('no slot free, 13 databases waiting, %d enqueues in %.1f s: %d log lines', $enqueued, $seconds, $exhausted);

# free the slots: noslot gets its worker; the 12 are looked at once, then remembered
$node->append_conf('postgresql.conf', "pacelc.workers_per_database = 1\nlog_min_messages = debug1");
$node->reload;
ok($node->poll_query_until('noslot', q{SELECT count(*) = 0 FROM pacelc.messages WHERE state = 'ready'}),
	'the waiting database is served once a slot is free');
# the launcher looks at the 12 once each as slots allow, a few at a time
# with a back-off of up to 1 s; a fixed pause could end before the last of
# them on a slow machine: wait for 3 s without such a start (at most 90 s)
for (1 .. 30)
{
	my $from = -s $node->logfile;
	usleep(3_000_000);
	last unless slurp_file($node->logfile, $from) =~
	  /starting background worker process "pacelc worker for empty/;
}
$log_from = -s $node->logfile;
usleep(5_000_000);
$log = slurp_file($node->logfile, $log_from);
my $starts = () = $log =~ /starting background worker process "pacelc worker for empty/g;
is($starts, 0, 'databases without pacelc are remembered: no worker started for them in 5 s');
$node->append_conf('postgresql.conf', "log_min_messages = warning");
$node->reload;
# CREATE EXTENSION makes the launcher look again at once
$node->safe_psql('empty7', $setup);
$node->safe_psql('empty7', q{SET ROLE regress_pacelc_shop;
	SELECT pacelc.enqueue('fast', jsonb_build_object('q', 'fast', 'n', 1, 't', clock_timestamp()))});
ok($node->poll_query_until('empty7', q{SELECT count(*) = 1 FROM seen}),
	'CREATE EXTENSION in a remembered database brings its worker');

$node->stop;
done_testing();
