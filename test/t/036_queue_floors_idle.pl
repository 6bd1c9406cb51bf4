# Scan floors of the workers that do not hold the queue (issue 15).  With
# several workers per database, one handles a queue (concurrency 1) while
# the others plan their next round after every wake-up and naptime.
# Beside a long transaction, those plans must start at a floor too: from
# the queue's start, each plan read every entry the handled messages left
# in the due index (the bloat benchmark lost half its rate to it; the
# planning statement took 19 ms instead of 0.03).  And the floors those
# plans raise never lose a message: one from a producer transaction that
# stayed open while they planned is handled, without waiting for the
# periodic full scan.
use strict;
use warnings FATAL => 'all';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = PostgreSQL::Test::Cluster->new('qfloors_idle');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pacelc'
pacelc.launcher_naptime = 1s
pacelc.worker_naptime = 1s
pacelc.workers_per_database = 3
pacelc.done_retention = 1s
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION pacelc;
	CREATE ROLE regress_pacelc_shop LOGIN;
	GRANT pacelc_app TO regress_pacelc_shop;
	CREATE TABLE effects (n int);
	GRANT INSERT ON effects TO regress_pacelc_shop;
	CREATE FUNCTION h(p jsonb) RETURNS void LANGUAGE sql
		AS $$ SELECT pg_sleep((p->>'sleep')::float8) WHERE p ? 'sleep';
			  INSERT INTO public.effects VALUES ((p->>'n')::int) $$;
	SET ROLE regress_pacelc_shop;
	SELECT pacelc.create_queue('q', 'public.h(jsonb)');
});

sub handled
{
	my ($n) = @_;
	return $node->poll_query_until('postgres',
		"SELECT count(*) >= $n FROM effects");
}

sub due_index_read
{
	return $node->safe_psql('postgres', q{
		SELECT idx_tup_read FROM pg_stat_all_indexes
		 WHERE indexrelid = 'pacelc.messages_due_idx'::regclass});
}

$node->safe_psql('postgres', q{SELECT pacelc.enqueue('q', '{"n": 0}')});
ok(handled(1), 'a first message handled');
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 3 FROM pg_stat_activity WHERE backend_type = 'pacelc worker'}),
	'three workers serve the database');

# a message due in an hour: the queue is never drained, so the worker
# does not truncate the table (as under steady load)
$node->safe_psql('postgres', q{SELECT pacelc.enqueue('q', '{"n": -1}', delay => '1 hour')});

# the long transaction: REPEATABLE READ, its snapshot taken
my $long = $node->background_psql('postgres');
$long->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
$long->query_safe('SELECT count(*) FROM pg_class');

# 3,000 messages behind it, in 30 transactions
for my $b (0 .. 29)
{
	$node->safe_psql('postgres',
		"SELECT pacelc.enqueue('q', jsonb_build_object('n', i)) FROM generate_series($b * 100 + 1, $b * 100 + 100) i");
}
ok(handled(3001), '3,000 messages handled beside the long transaction');
sleep 2;	# the workers' statistics reach the cumulative view

# a message whose handler takes 12 s: its worker keeps the queue while the
# others, idle, plan their rounds (its message is due, so they plan often);
# each worker starts its scans from the start every 10 s, so each does at
# least once in that time
my $before = due_index_read();
$node->safe_psql('postgres', q{
	SELECT pacelc.enqueue('q', '{"n": 5000, "sleep": 12}');
	SELECT pacelc.enqueue('q', jsonb_build_object('n', i)) FROM generate_series(5001, 5020) i});
ok(handled(3021), 'the slow message and those behind it handled');
sleep 2;	# the workers' statistics reach the cumulative view
my $read = due_index_read() - $before;
# from the start, each idle worker's plans would read the ~3,000 entries
# left behind each time; from the floors, about one full scan per worker
# every 10 s
ok($read < 30_000, "idle workers' plans skip the dead entries ($read index entries read in 12 s)");

# a producer transaction that stays open while the idle workers plan
my $slow = $node->background_psql('postgres');
$slow->query_safe('BEGIN');
$slow->query_safe(q{SELECT pacelc.enqueue('q', '{"n": 100001}')});
for my $i (1 .. 20)
{
	$node->safe_psql('postgres', "SELECT pacelc.enqueue('q', '{\"n\": " . (6000 + $i) . "}')");
	usleep(100_000);
}
ok(handled(3041), 'later messages handled while an earlier enqueue is still open');
my $t0 = time;
$slow->query_safe('COMMIT');
ok($node->poll_query_until('postgres', 'SELECT count(*) = 1 FROM effects WHERE n = 100001'),
	'the earlier enqueue handled once it commits');
my $late = time - $t0;
ok($late < 8, sprintf('without waiting for the periodic full scan (%.1f s)', $late));

$long->query_safe('COMMIT');
$long->quit;
$slow->quit;
is($node->safe_psql('postgres', 'SELECT count(*) FROM (SELECT n FROM effects GROUP BY n HAVING count(*) > 1) d'),
	'0', 'no effect applied twice');
$node->stop;
done_testing();
