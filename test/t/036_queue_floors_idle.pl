# Scan and purge floors beside a long transaction (issue 15).
# With several workers per database, one handles a queue (concurrency 1)
# while the others plan their next round after every wake-up and naptime.
# Those plans must start at a floor too: from the queue's start, each plan
# read every entry the handled messages left in the due index (the bloat
# benchmark lost half its rate to it; the planning statement took 19 ms
# instead of 0.03).  And the floors those plans raise never lose a message:
# one from a producer transaction that stayed open while they planned is
# handled, without waiting for the periodic full scan.  The purge of
# handled messages, every naptime, also starts at a floor instead of
# reading again every message it purged since the long transaction began,
# and that floor never skips a message acknowledged by a transaction that
# commits late.
use strict;
use warnings FATAL => 'all';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib "$FindBin::RealBin/../perl";
use PacelcTest;

my $node = pacelc_node('qfloors_idle', conf => q{
pacelc.launcher_naptime = 1s
pacelc.worker_naptime = 1s
pacelc.workers_per_database = 3
pacelc.done_retention = 1s
max_prepared_transactions = 2
});
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

# the queue "ext" empty within $limit seconds (a floored purge, not the
# full one of every minute)
sub purged_within
{
	my ($limit) = @_;
	my $t0 = time;
	while (time - $t0 < $limit)
	{
		if ($node->safe_psql('postgres',
				q{SELECT count(*) = 0 FROM pacelc.messages WHERE queue = 'ext'}) eq 't')
		{
			note(sprintf('purged in %.1f s', time - $t0));
			return 1;
		}
		usleep(200_000);
	}
	return 0;
}

sub index_read
{
	my ($index) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT idx_tup_read FROM pg_stat_all_indexes
		 WHERE indexrelid = 'pacelc.$index'::regclass});
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
my $before = index_read('messages_due_idx');
$node->safe_psql('postgres', q{
	SELECT pacelc.enqueue('q', '{"n": 5000, "sleep": 12}');
	SELECT pacelc.enqueue('q', jsonb_build_object('n', i)) FROM generate_series(5001, 5020) i});
ok(handled(3021), 'the slow message and those behind it handled');
sleep 2;	# the workers' statistics reach the cumulative view
my $read = index_read('messages_due_idx') - $before;
# from the start, each idle worker's plans would read the ~3,000 entries
# left behind each time (885,587 in all before the fix); from the floors,
# about one full scan per worker every 10 s (each a few thousand entries;
# 9,000 to 13,000 in all here)
ok($read < 100_000, "idle workers' plans skip the dead entries ($read index entries read in 12 s)");
# then 6 s of purges, one a second, with nothing new to purge: from the
# start each would read the entries of the ~3,000 messages purged before
# (~2 * 10^4 in all); from its floor, none (at most one full purge)
my $purge_before = index_read('messages_done_idx');
sleep 6;
my $purged = index_read('messages_done_idx') - $purge_before;
ok($purged < 8_000, "the purges skip the entries of purged messages ($purged read in 6 s)");
# the same while a prepared transaction that wrote stays open (as one a
# transaction manager forgot): what it marked done no purge can see
# before it commits, so the purges keep to their floors meanwhile (they
# started from the start while one was listed: each read those entries)
$node->safe_psql('postgres', q{
	CREATE TABLE held (n int);
	BEGIN;
	INSERT INTO held VALUES (1);
	PREPARE TRANSACTION 'pacelc_held'});
sleep 1;
$purge_before = index_read('messages_done_idx');
sleep 6;
$purged = index_read('messages_done_idx') - $purge_before;
ok($purged < 8_000, "beside a prepared transaction too ($purged read in 6 s)");
$node->safe_psql('postgres', q{ROLLBACK PREPARED 'pacelc_held'});

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

# an external consumer's ack() that commits seconds after it marked its
# message done (its done_at): the purges that ran meanwhile raised their
# floor no higher than when that transaction began, so the next one
# deletes it, without waiting for the full purge of every minute
$node->safe_psql('postgres', q{
	SET ROLE regress_pacelc_shop;
	SELECT pacelc.create_queue('ext');
	SELECT pacelc.enqueue('ext', '{"n": 1}')});
my $ack = $node->background_psql('postgres');
$ack->query_safe('BEGIN');
$ack->query_safe(q{SELECT pacelc.ack(id) FROM pacelc.dequeue('ext')});
sleep 4;	# purges with a cutoff past its done_at
$ack->query_safe('COMMIT');
ok(purged_within(20),
	'a message acknowledged by a long transaction is purged by a floored purge, not the full one');
$ack->quit;

# the same from a session that does not report its activity
# (track_activities off): pg_stat_activity shows its transaction id but
# not when it began, so the purges cannot place their floor below it
$node->safe_psql('postgres', q{SELECT pacelc.enqueue('ext', '{"n": 2}')});
my $quiet = $node->background_psql('postgres');
$quiet->query_safe('SET track_activities = off');
$quiet->query_safe('BEGIN');
$quiet->query_safe(q{SELECT pacelc.ack(id) FROM pacelc.dequeue('ext')});
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_stat_activity
	 WHERE backend_xid IS NOT NULL AND xact_start IS NULL}),
	'1', 'a writing transaction without a start time in pg_stat_activity');
sleep 4;	# purges with a cutoff past its done_at
$quiet->query_safe('COMMIT');
ok(purged_within(8), "its message is purged by a floored purge too");
$quiet->quit;

# and from a prepared transaction, which has no start time to read: the
# first purge that no longer lists it starts no higher than the floor in
# force when one first listed it
$node->safe_psql('postgres', q{SELECT pacelc.enqueue('ext', '{"n": 3}')});
$node->safe_psql('postgres', q{
	BEGIN;
	SELECT pacelc.ack(id) FROM pacelc.dequeue('ext');
	PREPARE TRANSACTION 'pacelc_ack'});
sleep 4;	# purges with a cutoff past its done_at
$node->safe_psql('postgres', q{COMMIT PREPARED 'pacelc_ack'});
ok(purged_within(8), 'a message acknowledged by a prepared transaction is purged');

$long->query_safe('COMMIT');
$long->quit;
$slow->quit;
is($node->safe_psql('postgres', 'SELECT count(*) FROM (SELECT n FROM effects GROUP BY n HAVING count(*) > 1) d'),
	'0', 'no effect applied twice');
$node->stop;
done_testing();
