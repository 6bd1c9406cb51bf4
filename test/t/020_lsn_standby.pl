# Session LSN tokens on a primary with two streaming standbys (one lagging):
# the reported token, waits that time out while replay is paused and finish
# when it resumes, 1,000 read-your-writes trials under load, monotonic reads
# across standbys, cancel / statement_timeout / promotion while waiting,
# max_staleness, and bad input.
use strict;
use warnings FATAL => 'all';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use PacelcTest;
use JSON::PP;
use Time::HiRes qw(usleep time);

my $client = "$FindBin::RealBin/lsn_client.py";
my $python = '/usr/bin/python3';
plan skip_all => 'python3-psycopg2 is not installed (the test client needs it)'
  unless have_python_module('psycopg2');

my $primary = pacelc_node('lsnprimary', allows_streaming => 1, conf => qq{
log_statement = none
max_connections = 40
});
$primary->safe_psql('postgres', q{
	CREATE EXTENSION pacelc;
	CREATE TABLE orders (id bigserial PRIMARY KEY, note text, at timestamptz DEFAULT now());
	CREATE TABLE churn (x int);
});
$primary->backup('b');

my $standby = pacelc_standby($primary, 'lsnstandby', backup => 'b');
my $slow = pacelc_standby($primary, 'lsnslow', backup => 'b', conf => "recovery_min_apply_delay = '1500ms'");
$primary->wait_for_catchup($standby);

sub dsn { my ($node) = @_; return 'host=' . $node->host . ' port=' . $node->port . ' dbname=postgres'; }
sub run_client
{
	my @args = @_;
	my ($stdout, $stderr);
	IPC::Run::run([ $python, $client, @args ], '>', \$stdout, '2>', \$stderr)
	  or die "lsn_client.py @args failed: $stderr";
	return decode_json($stdout);
}

# 1. the token reaches the client in a ParameterStatus message
my $t = run_client('token', dsn($primary));
note explain $t;
ok($t->{reported} =~ m{^[0-9A-F]+/[0-9A-F]+$}, "token reported after COMMIT ($t->{reported})");
is($t->{reported}, $t->{actual}, 'reported token equals commit_lsn()');
ok($t->{sane}, 'token is not ahead of the WAL');
sub lsn_num { my ($hi, $lo) = split m{/}, $_[0]; return hex($hi) * 2**32 + hex($lo); }
ok(lsn_num($t->{after_read}) >= lsn_num($t->{reported}), 'the token never goes backwards');

# 2. replay paused: the wait times out with PC010, and finishes on resume
$standby->safe_psql('postgres', 'SELECT pg_wal_replay_pause()');
$primary->safe_psql('postgres', q{INSERT INTO orders (note) VALUES ('paused')});
my $token = $primary->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
my ($ret, $out, $err) = $standby->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT pacelc.wait_for_lsn('$token', '300 ms')");
like($err, qr/PC010: standby did not replay to $token in time/, 'wait_for_lsn times out with PC010');
like($err, qr/DETAIL:  Waited 300 ms; replay is at [0-9A-F]+\/[0-9A-F]+, \d+ bytes behind/,
	'with target and replay positions');
($ret, $out, $err) = $standby->psql('postgres', qq{
	SET pacelc.wait_timeout = '200ms';
	SET pacelc.read_after = '$token';
	SELECT count(*) FROM orders WHERE note = 'paused';});
like($err, qr/standby did not replay to/, 'read_after times out with PC010 too');

my $bg = $standby->background_psql('postgres');
$bg->query_until(qr/start/, qq{
	\\echo start
	SET pacelc.read_after = '$token';
	SET pacelc.wait_timeout = '30s';
	SELECT 'seen:' || count(*) FROM orders WHERE note = 'paused';
});
$standby->poll_query_until('postgres', 'SELECT waiters > 0 FROM pacelc.replica_status');
is($standby->safe_psql('postgres', 'SELECT waiters FROM pacelc.replica_status'), '1',
	'one session is waiting');
my $t0 = time;
$standby->safe_psql('postgres', 'SELECT pg_wal_replay_resume()');
my $res = $bg->query_safe('SELECT 1');
$bg->quit;
ok(time - $t0 < 5, 'the waiting read finished when replay resumed');

# 3. 1,000 trials under a steady background write load
my $load = start_pgbench($primary,
	"INSERT INTO churn SELECT g FROM generate_series(1, 20) g;\n", clients => 4, seconds => 40);
my $with = run_client('trials', dsn($primary), dsn($standby), 1000, 'token', 'read committed');
my $without = run_client('trials', dsn($primary), dsn($standby), 1000, 'none', 'read committed');
my $rr = run_client('trials', dsn($primary), dsn($standby), 200, 'token', 'repeatable read');
$load->kill_kill;
note "with token: $with->{stale}/1000 stale (p50 $with->{p50_ms} ms, p99 $with->{p99_ms} ms); "
  . "without: $without->{stale}/1000 stale; repeatable read with token: $rr->{stale}/200 stale";
is($with->{stale}, 0, 'with the token, every one of 1,000 reads saw its write');
ok($without->{stale} > 0, "without the token, $without->{stale} of 1,000 reads were stale");
is($rr->{stale}, 0, 'REPEATABLE READ transactions after SET read_after see the write too');

# 4. monotonic reads across a fast and a lagging standby
my $mono = run_client('monotonic', dsn($primary), dsn($standby), dsn($slow), 3);
is($mono->{back_in_time}, 0, 'carrying max(seen_lsn) never goes back in time');

# 5. REPEATABLE READ whose snapshot predates the token: 40001, never stale
$standby->safe_psql('postgres', 'SELECT pg_wal_replay_pause()');
$primary->safe_psql('postgres', q{INSERT INTO orders (note) VALUES ('rr')});
$token = $primary->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
$bg = $standby->background_psql('postgres', on_error_stop => 0);
$bg->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
$bg->query_safe('SELECT count(*) FROM orders');
$standby->safe_psql('postgres', 'SELECT pg_wal_replay_resume()');
$bg->query(qq{SET pacelc.read_after = '$token'});
$err = $bg->{stderr};
$bg->quit;
like($err // '', qr/transaction snapshot may be older than/,
	'token set after the snapshot: serialization failure');

# 6. cancel and statement_timeout while waiting
$standby->safe_psql('postgres', 'SELECT pg_wal_replay_pause()');
$primary->safe_psql('postgres', q{INSERT INTO orders (note) VALUES ('cancel')});
$token = $primary->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
($ret, $out, $err) = $standby->psql('postgres', qq{
	SET statement_timeout = '300ms';
	SELECT pacelc.wait_for_lsn('$token', '30s');});
like($err, qr/canceling statement due to statement timeout/, 'statement_timeout ends the wait');
$bg = $standby->background_psql('postgres', on_error_stop => 0);
$bg->query_until(qr/start/, qq{\\echo start\nSELECT pacelc.wait_for_lsn('$token', '30s');\n});
$standby->poll_query_until('postgres', 'SELECT waiters > 0 FROM pacelc.replica_status');
$standby->safe_psql('postgres', q{
	SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%wait_for_lsn%' AND pid <> pg_backend_pid()});
($out, $err) = $bg->query('SELECT 1');
$bg->quit;
is($standby->safe_psql('postgres', 'SELECT waiters FROM pacelc.replica_status'), '0',
	'cancel ends the wait and leaves no waiter behind');

# 7. bad input
for my $case (
	[ q{SELECT pacelc.wait_for_lsn(NULL)}, qr/22004: target must not be null/ ],
	[ q{SELECT pacelc.wait_for_lsn('0/1', NULL)}, qr/22004: timeout must not be null/ ],
	[ q{SELECT pacelc.wait_for_lsn('0/1', '-1 s')}, qr/22023: timeout must not be negative/ ],
	[ q{SELECT pacelc.wait_for_lsn('nonsense')}, qr/22P02: invalid input syntax for type pg_lsn/ ],
	[ q{SET pacelc.read_after = 'garbage'}, qr/22023: invalid value for parameter "pacelc.read_after"/ ],
	[ q{SET pacelc.wait_timeout = -5}, qr/22023: -5 ms is outside the valid range/ ],
	[ q{SET pacelc.commit_lsn = '0/1'}, qr/55P02: parameter "pacelc.commit_lsn" cannot be changed/ ])
{
	($ret, $out, $err) = $standby->psql('postgres', "\\set VERBOSITY verbose\n$case->[0]");
	like($err, $case->[1], "$case->[0] rejected");
}

# 8. on the primary everything returns at once
$t0 = time;
is($primary->safe_psql('postgres', q{
	SET pacelc.read_after = 'FFFF/0';
	SELECT pacelc.wait_for_lsn('FFFF/0', '10 s') IS NOT NULL, count(*) > 0 FROM orders}),
	't|t', 'the primary never waits');
ok(time - $t0 < 2, 'and returns at once');

# 9. max_staleness: fine while streaming, PC011 once the primary is gone
$standby->safe_psql('postgres', 'SELECT pg_wal_replay_resume()');
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', q{SET pacelc.max_staleness = '60s'; SELECT count(*) > 0 FROM orders}),
	't', 'a streaming standby proves it is fresh');

# 10. promotion while waiting: the wait ends at once
$primary->safe_psql('postgres', q{INSERT INTO orders (note) VALUES ('future')});
$standby->safe_psql('postgres', 'SELECT pg_wal_replay_pause()');
$bg = $standby->background_psql('postgres', on_error_stop => 0);
$bg->query_until(qr/start/, qq{\\echo start\nSELECT 'done:' || pacelc.wait_for_lsn('FFFF/0', '60s');\n});
$primary->stop('fast');
# the WAL receiver notices the end of the stream a moment later
$standby->poll_query_until('postgres',
	q{SELECT count(*) = 0 FROM pg_stat_wal_receiver WHERE status = 'streaming'})
  or die 'the WAL receiver still streams from a stopped primary';
($ret, $out, $err) = $standby->psql('postgres', q{SET pacelc.max_staleness = '60s'; SELECT 1},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/PC011|cannot prove/, 'without a WAL receiver the standby refuses max_staleness reads');
$t0 = time;
$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()') or die;
$bg->query('SELECT 42');
$err = $bg->{stderr};
$bg->quit;
ok(time - $t0 < 10, 'promotion ended the wait');
like($err // '', qr/beyond the history of this server/,
	'and a target this node never had is an error (PC012), not a silent return');
is($standby->safe_psql('postgres', 'SELECT role FROM pacelc.replica_status'), 'primary',
	'the promoted node reports itself as primary');

$standby->stop;
$slow->stop;
done_testing();
