# Scan floors (issue 15): with a REPEATABLE READ transaction holding its
# snapshot open, handled messages leave index entries nobody can remove;
# the worker's scans start at its floor, so they do not step over them, and
# once the queue is drained the worker truncates the table, long
# transaction or not.
# And the floor never loses a message: one from a producer transaction that
# stayed open while later ones were handled, a retried dead letter and a
# prepared enqueue are all handled, each exactly once; one made due below
# the floors by hand, by the periodic full scan.
use strict;
use warnings FATAL => 'all';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = PostgreSQL::Test::Cluster->new('qfloors');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pacelc'
max_prepared_transactions = 2
pacelc.launcher_naptime = 1s
pacelc.worker_naptime = 1s
pacelc.workers_per_database = 1
pacelc.done_retention = 1s
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION pacelc;
	CREATE ROLE regress_pacelc_shop LOGIN;
	GRANT pacelc_app TO regress_pacelc_shop;
	CREATE TABLE effects (n int);
	GRANT INSERT ON effects TO regress_pacelc_shop;
	CREATE FUNCTION h(p jsonb) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		IF p ? 'fail' THEN RAISE EXCEPTION 'poison'; END IF;
		INSERT INTO public.effects VALUES ((p->>'n')::int);
	END $$;
	SET ROLE regress_pacelc_shop;
	SELECT pacelc.create_queue('q', 'public.h(jsonb)', max_attempts => 1);
});

sub handled
{
	my ($n) = @_;
	return $node->poll_query_until('postgres',
		"SELECT count(*) >= $n FROM effects");
}

# the worker plans its statements (and keeps the plans) with statistics
# saying the table is empty, as after a drained queue's truncation
$node->safe_psql('postgres', q{SELECT pacelc.enqueue('q', '{"n": 0}')});
ok(handled(1), 'a first message handled');
ok($node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM pacelc.messages'),
	'and purged');
$node->safe_psql('postgres', 'ANALYZE pacelc.messages');
$node->safe_psql('postgres', q{SELECT pacelc.enqueue('q', '{"n": 0}')});
ok(handled(2), 'a second message handled');
$node->safe_psql('postgres', 'TRUNCATE effects');

# the long transaction: REPEATABLE READ, its snapshot taken
my $long = $node->background_psql('postgres');
$long->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
$long->query_safe('SELECT count(*) FROM pg_class');

# 3,000 messages, 100 per transaction, behind it
for my $b (0 .. 29)
{
	$node->safe_psql('postgres',
		"SELECT pacelc.enqueue('q', jsonb_build_object('n', i, 'pad', repeat('x', 300))) FROM generate_series($b * 100 + 1, $b * 100 + 100) i");
}
ok(handled(3000), '3,000 messages handled beside the long transaction');
sleep 2;	# the worker's statistics reach the cumulative view
my $read = $node->safe_psql('postgres', q{
	SELECT idx_tup_read FROM pg_stat_all_indexes WHERE indexrelid = 'pacelc.messages_due_idx'::regclass});
# a scan from the queue's start would read every entry left behind: about
# n^2 / batch in all (~10^5 here); from the floor, a few per message
note $node->safe_psql('postgres', q{SELECT string_agg(indexrelid::regclass || ' ' || idx_scan || ' ' || idx_tup_read, ', ') FROM pg_stat_all_indexes WHERE relid = 'pacelc.messages'::regclass});
ok($read < 30_000, "the worker's scans skip the dead entries ($read index entries read for 3,000 messages)");
# and its statements on leased messages probe the primary key for the
# batch's ids: a plan reading the whole index per batch (what the kept
# generic plan did with the statistics of an empty queue) reads ~10^5
my $pk = $node->safe_psql('postgres', q{
	SELECT idx_tup_read FROM pg_stat_all_indexes WHERE indexrelid = 'pacelc.messages_pkey'::regclass});
ok($pk < 40_000, "the batches probe the primary key for their own messages ($pk entries read for 3,000 messages)");

# drained and purged: truncated, although the long transaction is open
my $size = $node->safe_psql('postgres', q{SELECT pg_total_relation_size('pacelc.messages')});
note "messages table and indexes: $size bytes";
ok($node->poll_query_until('postgres',
	q{SELECT pg_total_relation_size('pacelc.messages') < 256 * 1024}),
	'the drained table is truncated while the long transaction is open');
is($long->query_safe('SELECT 1'), '1', 'the long transaction goes on');

# a producer transaction that stays open while later messages are handled
my $slow = $node->background_psql('postgres');
$slow->query_safe('BEGIN');
$slow->query_safe(q{SELECT pacelc.enqueue('q', '{"n": 100001}')});
$node->safe_psql('postgres',
	"SELECT pacelc.enqueue('q', jsonb_build_object('n', i)) FROM generate_series(3001, 3100) i");
ok(handled(3100), 'later messages handled while an earlier enqueue is still open');
my $t0 = time;
$slow->query_safe('COMMIT');
ok($node->poll_query_until('postgres', 'SELECT count(*) = 1 FROM effects WHERE n = 100001'),
	'the earlier enqueue handled once it commits');
my $late = time - $t0;
ok($late < 8, sprintf('without waiting for the periodic full scan (%.1f s)', $late));

# a dead letter brought back
$node->safe_psql('postgres', q{SELECT pacelc.enqueue('q', '{"n": 100002, "fail": true}')});
ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pacelc.dead_letters WHERE (payload->>'n')::int = 100002}),
	'a poison message is dead');
$node->safe_psql('postgres', q{
	UPDATE pacelc.messages SET payload = '{"n": 100002}' WHERE (payload->>'n')::int = 100002;
	SELECT pacelc.retry(id) FROM pacelc.messages WHERE (payload->>'n')::int = 100002});
$t0 = time;
ok($node->poll_query_until('postgres', 'SELECT count(*) = 1 FROM effects WHERE n = 100002'),
	'a retried dead letter is handled');
ok(time - $t0 < 8, 'retry() wakes the scans from the start');

# a prepared enqueue: its COMMIT PREPARED sends the scans back to the
# start (the floors passed its messages while it was prepared)
$node->safe_psql('postgres', q{
	BEGIN;
	SELECT pacelc.enqueue('q', '{"n": 100003}');
	PREPARE TRANSACTION 'floor_2pc'});
$node->safe_psql('postgres',
	"SELECT pacelc.enqueue('q', jsonb_build_object('n', i)) FROM generate_series(3101, 3200) i");
ok(handled(3202), 'messages handled while a prepared enqueue waits');
$node->safe_psql('postgres', q{COMMIT PREPARED 'floor_2pc'});
$t0 = time;
ok($node->poll_query_until('postgres', 'SELECT count(*) = 1 FROM effects WHERE n = 100003'),
	'the prepared enqueue is handled after COMMIT PREPARED');
ok(time - $t0 < 5, sprintf('at once, not at the full scan of every 10 s (%.1f s)', time - $t0));

# a message the floors passed without anyone lowering them (its run_at
# moved back by hand): the safety net, each worker's full scan of every
# 10 s (beside this transaction no later: its full scans take milliseconds,
# and it waits 100 times the shorter of its last two), finds it
$node->safe_psql('postgres', q{SELECT pacelc.enqueue('q', '{"n": 100004}', delay => '1 hour')});
sleep 2;	# the floors pass where it will be due
$node->safe_psql('postgres', q{
	UPDATE pacelc.messages SET run_at = now() - interval '1 minute'
	 WHERE payload = '{"n": 100004}'});
$t0 = time;
ok($node->poll_query_until('postgres', 'SELECT count(*) = 1 FROM effects WHERE n = 100004'),
	'a message made due below the floors by hand is handled');
ok(time - $t0 < 25, sprintf('by the periodic full scan (%.1f s)', time - $t0));

$long->query_safe('COMMIT');
$long->quit;
$slow->quit;

is($node->safe_psql('postgres', 'SELECT count(*) FROM (SELECT n FROM effects GROUP BY n HAVING count(*) > 1) d'),
	'0', 'no effect applied twice');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pacelc.messages WHERE state = 'ready'}),
	'0', 'nothing left behind');

$node->stop;
done_testing();
