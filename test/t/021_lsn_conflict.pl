# A wait that holds a snapshot and locks (wait_for_lsn() inside a query that
# reads a table) must not block the very replay it waits for: when replay
# stops on a recovery conflict the waiter gives up at once with 40001
# instead of stalling replay until PC010.  SET pacelc.read_after waits
# before any snapshot and is never in the way.
use strict;
use warnings FATAL => 'all';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use PacelcTest;
use Time::HiRes qw(time);

my $primary = pacelc_node('cprimary', allows_streaming => 1, conf => qq{
log_statement = none
});
$primary->safe_psql('postgres', q{
	CREATE EXTENSION pacelc;
	CREATE TABLE t (x int);
	INSERT INTO t VALUES (1);
});
my $standby = pacelc_standby($primary, 'cstandby', backup => 'b', conf => "max_standby_streaming_delay = 60s");
$primary->wait_for_catchup($standby);

# replay paused; the primary takes an AccessExclusiveLock on t and commits
$standby->safe_psql('postgres', 'SELECT pg_wal_replay_pause()');
$standby->poll_query_until('postgres', q{SELECT pg_get_wal_replay_pause_state() = 'paused'});
$primary->safe_psql('postgres', q{TRUNCATE t; INSERT INTO t VALUES (2);});
my $token = $primary->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');

# a query that locks t, then waits for the token inside the statement
my ($stdout, $stderr) = ('', '');
my $h = IPC::Run::start(
	[ 'psql', '-X', '-At', '-d', $standby->connstr('postgres'), '-c',
	  "SELECT pacelc.wait_for_lsn('$token', '30s'), (SELECT count(*) FROM t)" ],
	'>', \$stdout, '2>', \$stderr);
$standby->poll_query_until('postgres', q{SELECT waiters = 1 FROM pacelc.replica_status});
sleep 1;
is($standby->safe_psql('postgres', q{
	SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%wait_for_lsn%' AND pid <> pg_backend_pid()}),
	'1', 'while replay is paused, it waits');
my $t0 = time;
$standby->safe_psql('postgres', 'SELECT pg_wal_replay_resume()');
$h->finish;
my $took = time - $t0;
like($stderr, qr/canceling wait for replay .* due to a conflict with recovery/,
	'the waiter gives way to replay');
ok($took < 15, sprintf('at once (%.1f s), not after its 30 s timeout', $took));

# replay went on, and the token is reachable
$standby->poll_query_until('postgres', "SELECT pg_last_wal_replay_lsn() >= '$token'");
is($standby->safe_psql('postgres', qq{
	SET pacelc.read_after = '$token';
	SELECT x FROM t;}), '2', 'read_after (waits before the snapshot) reads the new data');

# the same with read_after set before the statement: no conflict, no error
$standby->safe_psql('postgres', 'SELECT pg_wal_replay_pause()');
$standby->poll_query_until('postgres', q{SELECT pg_get_wal_replay_pause_state() = 'paused'});
$primary->safe_psql('postgres', q{TRUNCATE t; INSERT INTO t VALUES (3);});
$token = $primary->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
($stdout, $stderr) = ('', '');
$h = IPC::Run::start(
	[ 'psql', '-X', '-q', '-At', '-d', $standby->connstr('postgres'), '-c',
	  "SET pacelc.read_after = '$token'", '-c', 'SELECT x FROM t' ],
	'>', \$stdout, '2>', \$stderr);
$standby->poll_query_until('postgres', q{SELECT waiters = 1 FROM pacelc.replica_status});
$standby->safe_psql('postgres', 'SELECT pg_wal_replay_resume()');
$h->finish;
chomp $stdout;
is($stdout, '3', "read_after set before the statement waits and reads the new data ($stderr)");

# a session whose token cannot be reached in time can still clean up:
# ROLLBACK (and SET, SHOW) read no data and do not wait for the token
$standby->safe_psql('postgres', 'SELECT pg_wal_replay_pause()');
$standby->poll_query_until('postgres', q{SELECT pg_get_wal_replay_pause_state() = 'paused'});
$primary->safe_psql('postgres', q{INSERT INTO t VALUES (4);});
$token = $primary->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
my ($ret, $out, $err) = $standby->psql('postgres', qq{
	BEGIN;
	SET LOCAL pacelc.wait_timeout = '100ms';
	SET LOCAL pacelc.read_after = '$token';
	ROLLBACK;
	SELECT 'clean';}, on_error_stop => 0);
like($err, qr/standby did not replay to/, 'the token cannot be reached: PC010');
like($out, qr/clean/, 'ROLLBACK still works, and the session goes on');
$standby->safe_psql('postgres', 'SELECT pg_wal_replay_resume()');

$standby->stop;
$primary->stop;
done_testing();
