# The purge floor beside prepared transactions (issue 15).  What a prepared
# transaction marked done no purge sees before it commits, and it has no
# start time to read: the first purge that no longer lists it starts no
# higher than the floor in force when a purge first listed it.  Here: two
# prepared at different floors, committed in the reverse order; a commit
# seen by no committed purge (those that ran after it failed: their list
# of prepared transactions must not be taken over); and one prepared
# before the purging worker restarted (what it remembered is gone).  Each
# message must be purged by a floored purge (within seconds), not by the
# full purge of every minute.
use strict;
use warnings FATAL => 'all';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib "$FindBin::RealBin/../perl";
use PacelcTest;

my $node = pacelc_node('qfloors_prepared', conf => q{
pacelc.launcher_naptime = 1s
pacelc.worker_naptime = 1s
pacelc.workers_per_database = 1
pacelc.done_retention = 1s
max_prepared_transactions = 3
});
$node->safe_psql('postgres', q{
	CREATE EXTENSION pacelc;
	SELECT pacelc.create_queue('ext');
	-- a message due in an hour: the table is never drained (no truncation)
	SELECT pacelc.enqueue('ext', '{"n": 0}', delay => '1 hour');
});
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pacelc worker'}),
	'the worker runs');

# message n taken and acknowledged by prepared transaction "p<n>"
sub ack_prepared
{
	my ($n) = @_;
	$node->safe_psql('postgres', qq{
		SELECT pacelc.enqueue('ext', '{"n": $n}');
		BEGIN;
		SELECT pacelc.ack(id) FROM pacelc.dequeue('ext');
		PREPARE TRANSACTION 'p$n'});
}

# message n gone within $limit seconds
sub purged_within
{
	my ($n, $limit) = @_;
	my $t0 = time;
	while (time - $t0 < $limit)
	{
		if ($node->safe_psql('postgres',
				"SELECT count(*) = 0 FROM pacelc.messages WHERE payload = '{\"n\": $n}'") eq 't')
		{
			note(sprintf('message %d purged in %.1f s', $n, time - $t0));
			return 1;
		}
		usleep(200_000);
	}
	return 0;
}

# two prepared transactions, the second first listed at a floor above
# what the first marked; the second commits first
ack_prepared(1);
sleep 4;	# purges list p1, their floors pass its done_at
ack_prepared(2);
sleep 4;	# and p2's
$node->safe_psql('postgres', q{COMMIT PREPARED 'p2'});
ok(purged_within(2, 8), 'the later prepared transaction, committed first: purged');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pacelc.messages WHERE payload = '{"n": 1}'}),
	'1', 'the other one, still prepared, is not');
$node->safe_psql('postgres', q{COMMIT PREPARED 'p1'});
ok(purged_within(1, 8), 'the earlier one, committed last: purged');

# a commit that the purges after it see while they fail: their lists are
# not taken over, so the first that commits still finds it gone.  They
# fail on a handled message another session keeps locked (lock_timeout),
# after they listed the prepared transactions.
ack_prepared(3);
sleep 4;
my $locker = $node->background_psql('postgres');
$locker->query_safe(q{SELECT pacelc.enqueue('ext', '{"n": 9}')});
$locker->query_safe(q{SELECT pacelc.ack(id) FROM pacelc.dequeue('ext')});
$locker->query_safe('BEGIN');
$locker->query_safe(q{SELECT 1 FROM pacelc.messages WHERE payload = '{"n": 9}' FOR UPDATE});
$node->safe_psql('postgres', q{COMMIT PREPARED 'p3'});
sleep 3;
is($node->safe_psql('postgres', q{
	SELECT string_agg(payload->>'n', ',' ORDER BY payload->>'n') FROM pacelc.messages
	 WHERE payload->>'n' IN ('3', '9')}),
	'3,9', 'the purges fail meanwhile: both messages are still there');
$locker->query_safe('COMMIT');
$locker->quit;
ok(purged_within(3, 8), 'a commit first missed by failed purges: purged');

# one prepared before the purging worker restarts
ack_prepared(4);
sleep 3;
my $old = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'pacelc worker'});
$node->safe_psql('postgres', "SELECT pg_terminate_backend($old)");
ok($node->poll_query_until('postgres', qq{
		SELECT count(*) = 1 FROM pg_stat_activity
		 WHERE backend_type = 'pacelc worker' AND pid <> $old}),
	'the worker is back');
sleep 4;	# its purges list p4, their floors pass its done_at
$node->safe_psql('postgres', q{COMMIT PREPARED 'p4'});
ok(purged_within(4, 8), 'prepared before the worker restarted: purged');

is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_prepared_xacts}), '0',
	'no prepared transaction left');
$node->stop;
done_testing();
