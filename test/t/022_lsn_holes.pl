# Read-your-writes with no holes (issue 11): every path by which a statement
# on a standby could read a snapshot older than the session's token must
# either read fresh data or fail with a retryable error (40001, PC010,
# PC011), never return older data silently.  Extended-protocol paths go
# through libpq (test/t/lsn_driver.c); the rest through the same driver's
# simple protocol.
use strict;
use warnings FATAL => 'all';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use PacelcTest;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use LsnDriver;
use Time::HiRes qw(usleep time);

my $primary = pacelc_node('hprimary', allows_streaming => 1, conf => qq{
log_statement = none
max_connections = 30
});
$primary->safe_psql('postgres', q{
	CREATE EXTENSION pacelc;
	CREATE TABLE t (id bigserial PRIMARY KEY, note text);
	CREATE TABLE big (id int, pad text);
	CREATE TABLE p (id int, pad text) WITH (fillfactor = 100, autovacuum_enabled = off);
	CREATE TABLE w (x int);
});
my $standby = pacelc_standby($primary, 'hstandby', backup => 'b', conf => qq{
max_standby_streaming_delay = 60s
pacelc.wait_timeout = '20s'
});
$primary->wait_for_catchup($standby);

my $sconn = $standby->connstr('postgres');

sub pause_replay
{
	$standby->safe_psql('postgres', 'SELECT pg_wal_replay_pause()');
	$standby->poll_query_until('postgres',
		q{SELECT pg_get_wal_replay_pause_state() = 'paused'}) or die;
}
sub resume_replay { $standby->safe_psql('postgres', 'SELECT pg_wal_replay_resume()'); }
sub replayed
{
	my ($lsn) = @_;
	$standby->poll_query_until('postgres', "SELECT pg_last_wal_replay_lsn() >= '$lsn'") or die;
}
# a committed row on the primary and its token
sub write_row
{
	my ($note) = @_;
	return $primary->safe_psql('postgres',
		"INSERT INTO t (note) VALUES ('$note'); SELECT pacelc.commit_lsn();");
}
sub count_sql { return "SELECT count(*) FROM t WHERE note = '$_[0]'"; }
sub fresh_or_retry
{
	my ($ans, $name) = @_;
	ok($ans eq 'OK 1' || $ans =~ /^ERR (40001|PC010|PC011) /, "$name: fresh or retryable ($ans)");
}

# 1. REPEATABLE READ, named prepared statement, token set mid-transaction
#    with set_config: the Execute must not read the old snapshot
{
	my $d = LsnDriver->new($sconn);
	$d->cmd('P', 's1', 'SELECT count(*) FROM t WHERE note = $1');
	pause_replay();
	my $tok = write_row('rr1');
	is($d->cmd('Q', 'BEGIN ISOLATION LEVEL REPEATABLE READ'), 'OK ', 'RR begun');
	is($d->cmd('E', 's1', 'rr1'), 'OK 0', 'RR snapshot taken before the write');
	resume_replay();
	replayed($tok);
	is($d->cmd('X', q{SELECT set_config('pacelc.read_after', $1, false)}, $tok), "OK $tok",
		'token set mid-transaction with set_config');
	my $ans = $d->cmd('E', 's1', 'rr1');
	like($ans, qr/^ERR 40001 /, "item 1: re-executed prepared statement in RR gets 40001 ($ans)");
	$d->cmd('Q', 'ROLLBACK');
	is($d->cmd('E', 's1', 'rr1'), 'OK 1', 'and outside the old snapshot it reads the row');
	$d->quit;
}

# 2. wait_for_lsn in an open RR transaction, and in the same statement as
#    the read in READ COMMITTED
{
	my $d = LsnDriver->new($sconn);
	pause_replay();
	my $tok = write_row('w2');
	$d->cmd('Q', 'BEGIN ISOLATION LEVEL REPEATABLE READ');
	is($d->cmd('Q', count_sql('w2')), 'OK 0', 'RR snapshot before the write');
	resume_replay();
	my $ans = $d->cmd('Q', "SELECT pacelc.wait_for_lsn('$tok', '20s') IS NOT NULL");
	$ans = $d->cmd('Q', count_sql('w2')) if $ans eq 'OK t';
	fresh_or_retry($ans, 'item 2: wait_for_lsn inside RR');
	like($ans, qr/^ERR 40001/, 'item 2: RR snapshot older than the waited-for LSN gives 40001');
	$d->cmd('Q', 'ROLLBACK');

	pause_replay();
	$tok = write_row('w2b');
	$d->send('Q', "SELECT pacelc.wait_for_lsn('$tok', '20s') IS NOT NULL, (" . count_sql('w2b') . ')');
	# replay resumes only once the statement (and its snapshot) is there:
	# a fixed pause could be too short on a busy machine
	$standby->poll_query_until('postgres', 'SELECT waiters = 1 FROM pacelc.replica_status')
	  or die 'the statement does not wait';
	resume_replay();
	$ans = $d->answer;
	fresh_or_retry($ans, 'item 2: wait_for_lsn in the same statement as the read (RC)');
	like($ans, qr/^ERR 40001/, 'item 2: the statement snapshot predates the target: 40001');
	pause_replay();
	$tok = write_row('w2c');
	$d->send('Q', "SELECT pacelc.wait_for_lsn('$tok', '20s') IS NOT NULL");
	usleep(300_000);
	resume_replay();
	is($d->answer, 'OK t', 'wait_for_lsn alone in its statement still works in RC');
	is($d->cmd('Q', count_sql('w2c')), 'OK 1', 'and the next statement sees the row');
	$d->quit;
}

# 3. cursors declared before the token (also WITH HOLD)
{
	my $d = LsnDriver->new($sconn);
	pause_replay();
	my $tok = write_row('c3');
	$d->cmd('Q', 'BEGIN');
	$d->cmd('Q', 'DECLARE c CURSOR FOR ' . count_sql('c3'));
	is($d->cmd('Q', 'DECLARE h CURSOR WITH HOLD FOR ' . count_sql('c3')), 'OK ', 'cursors declared');
	$d->cmd('Q', 'COMMIT');
	$d->cmd('Q', 'BEGIN');
	$d->cmd('Q', 'DECLARE c CURSOR FOR ' . count_sql('c3'));
	resume_replay();
	replayed($tok);
	is($d->cmd('Q', "SET pacelc.read_after = '$tok'"), 'OK ', 'token set (replay is there)');
	my $ans = $d->cmd('Q', 'FETCH ALL FROM c');
	like($ans, qr/^ERR 40001 /, "item 3: FETCH from a cursor older than the token: 40001 ($ans)");
	$d->cmd('Q', 'ROLLBACK');
	$d->cmd('Q', "SET pacelc.read_after = '$tok'");	# the one above was rolled back
	$ans = $d->cmd('Q', 'FETCH ALL FROM h');
	like($ans, qr/^ERR 40001 /, "item 3: FETCH from a WITH HOLD cursor older than the token: 40001 ($ans)");
	$d->cmd('Q', 'CLOSE h');
	$d->cmd('Q', 'DECLARE h2 CURSOR WITH HOLD FOR ' . count_sql('c3'));
	is($d->cmd('Q', 'FETCH ALL FROM h2'), 'OK 1', 'a cursor declared after the token reads the row');
	$d->cmd('Q', 'RESET pacelc.read_after');

	# a PL/pgSQL cursor opened before the token, fetched after it
	$primary->safe_psql('postgres', q{
		CREATE FUNCTION fetch_after(tok text) RETURNS bigint LANGUAGE plpgsql AS $$
		DECLARE c CURSOR FOR SELECT count(*) FROM t WHERE note = 'c3p'; n bigint;
		BEGIN
			OPEN c;
			PERFORM pg_sleep(2);
			PERFORM set_config('pacelc.read_after', tok, false);
			FETCH c INTO n;
			RETURN n;
		END $$;});
	$primary->wait_for_catchup($standby);
	pause_replay();
	$tok = write_row('c3p');
	$d->send('Q', "SELECT fetch_after('$tok')");
	# the cursor is open once the function sleeps
	$standby->poll_query_until('postgres', q{
		SELECT count(*) = 1 FROM pg_stat_activity
		 WHERE wait_event = 'PgSleep' AND query LIKE 'SELECT fetch_after(%'})
	  or die 'the function does not get to its sleep';
	resume_replay();
	$ans = $d->answer;
	like($ans, qr/^ERR 40001 /, "item 3: PL/pgSQL FETCH from a cursor opened before the token: 40001 ($ans)");
	$d->quit;
}

# 4. SET TRANSACTION SNAPSHOT importing an older snapshot
{
	my $a = LsnDriver->new($sconn);
	my $b = LsnDriver->new($sconn);
	pause_replay();
	my $tok = write_row('s4');
	$a->cmd('Q', 'BEGIN ISOLATION LEVEL REPEATABLE READ');
	my $snap = $a->cmd('Q', 'SELECT pg_export_snapshot()');
	$snap =~ s/^OK //;
	resume_replay();
	replayed($tok);
	$b->cmd('Q', "SET pacelc.read_after = '$tok'");
	$b->cmd('Q', 'BEGIN ISOLATION LEVEL REPEATABLE READ');
	my $ans = $b->cmd('Q', "SET TRANSACTION SNAPSHOT '$snap'");
	$ans = $b->cmd('Q', count_sql('s4')) if $ans eq 'OK ';
	fresh_or_retry($ans, 'item 4: imported older snapshot');
	like($ans, qr/^ERR 40001/, 'item 4: it cannot be proved to include the token: 40001');
	$b->cmd('Q', 'ROLLBACK');
	$a->cmd('Q', 'ROLLBACK');
	$a->quit;
	$b->quit;
}

# 5. max_staleness holds for every statement of a multi-statement string
{
	write_row('m5');
	$primary->wait_for_catchup($standby);
	pause_replay();
	write_row('m5b');
	my $d = LsnDriver->new($sconn);
	my $ans = $d->cmd('Q', "SET pacelc.max_staleness = '4s'; SELECT 1; SELECT pg_sleep(5); SELECT count(*) FROM t");
	like($ans, qr/^ERR PC011 /, "item 5: the last statement of the string is refused ($ans)");
	resume_replay();
	# ... and for every query inside one long function call
	$primary->safe_psql('postgres', q{
		CREATE FUNCTION slow_count() RETURNS bigint LANGUAGE plpgsql AS
		$$BEGIN PERFORM pg_sleep(5); RETURN (SELECT count(*) FROM t); END$$;});
	write_row('m5c');
	$primary->wait_for_catchup($standby);
	pause_replay();
	write_row('m5d');
	$ans = $d->cmd('Q', "SET pacelc.max_staleness = '4s'; SELECT slow_count()");
	like($ans, qr/^ERR PC011 /, "item 5: the query inside a long function call is refused ($ans)");
	resume_replay();
	$d->quit;
}

# 6. COPY ... TO reports pacelc.seen_lsn
{
	my $d = LsnDriver->new($sconn);
	is($d->cmd('S', 'pacelc.seen_lsn'), '', 'nothing seen yet');
	like($d->cmd('Q', 'COPY t TO STDOUT'), qr/^OK \d+/, 'COPY TO ran');
	like($d->cmd('S', 'pacelc.seen_lsn'), qr{^[0-9A-F]+/[0-9A-F]+$}, 'item 6: COPY TO reports seen_lsn');
	$d->quit;
}

# 7. READ COMMITTED, named prepared statement after set_config of a token
#    while replay lags: waits, then reads with a fresh snapshot, no 40001
{
	my $d = LsnDriver->new($sconn);
	$d->cmd('P', 's7', 'SELECT count(*) FROM t WHERE note = $1');
	is($d->cmd('E', 's7', 'r7'), 'OK 0', 'prepared');
	pause_replay();
	my $tok = write_row('r7');
	is($d->cmd('X', q{SELECT set_config('pacelc.read_after', $1, false)}, $tok), "OK $tok", 'token set');
	$d->send('E', 's7', 'r7');
	usleep(300_000);
	resume_replay();
	my $ans = $d->answer;
	is($ans, 'OK 1', "item 7: RC re-execution waits and reads the row ($ans)");
	for my $i (1 .. 6)		# custom and then generic plans
	{
		pause_replay();
		$tok = write_row("r7_$i");
		$d->cmd('X', q{SELECT set_config('pacelc.read_after', $1, false)}, $tok);
		$d->send('E', 's7', "r7_$i");
		usleep(100_000);
		resume_replay();
		$ans = $d->answer;
		last if $ans ne 'OK 1';
	}
	is($ans, 'OK 1', 'item 7: also with the generic plan');
	# pipeline mode: set_config and Execute in one round trip
	pause_replay();
	$tok = write_row('r7p');
	$d->cmd('P', 's7p', "SELECT count(*) FROM t WHERE note = 'r7p'");
	$d->send('PIPE', 's7p', $tok);
	usleep(300_000);
	resume_replay();
	is($d->answer, 'OK 1', 'item 7: pipeline mode (set_config + Execute, one Sync)');
	$d->cmd('Q', 'RESET pacelc.read_after');
	$d->quit;
}

# 8. a session that holds relation locks but no snapshot must give way to
#    replay at once (40001), and replay must not stall
{
	my $d = LsnDriver->new($sconn);
	pause_replay();
	my $tok = $primary->safe_psql('postgres', q{TRUNCATE w; INSERT INTO w VALUES (8); SELECT pacelc.commit_lsn();});
	$d->cmd('Q', 'BEGIN');
	is($d->cmd('Q', 'SELECT count(*) FROM w'), 'OK 0', 'lock on w taken');
	resume_replay();
	$standby->poll_query_until('postgres', q{
		SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'startup' AND wait_event_type = 'Lock'})
	  or diag('startup not seen waiting on the lock');
	my $t0 = time;
	my $ans = $d->cmd('Q', "SET pacelc.read_after = '$tok'");
	my $took = time - $t0;
	like($ans, qr/^ERR 40001 /, "item 8: lock holder gives way with 40001 ($ans)");
	ok($took < 5, sprintf('item 8: at once (%.1f s), not after wait_timeout', $took));
	$d->cmd('Q', 'ROLLBACK');
	$t0 = time;
	replayed($tok);
	ok(time - $t0 < 10, 'replay went on');
	$d->quit;
}

# 9. a read-only transaction that prunes a page writes WAL, but the token
#    stays at the last real commit
{
	$primary->safe_psql('postgres', q{
		INSERT INTO p SELECT g, repeat('x', 200) FROM generate_series(1, 150) g;
		UPDATE p SET pad = repeat('y', 200);
		UPDATE p SET pad = repeat('z', 200);});
	my $out = $primary->safe_psql('postgres', q{
		INSERT INTO w VALUES (9);
		SELECT pacelc.commit_lsn() AS t1, pg_current_wal_insert_lsn() AS w1 \gset
		SELECT count(*) FROM p;
		SELECT pg_current_wal_insert_lsn() > :'w1' AS wrote, pacelc.commit_lsn() = :'t1' AS same,
		       current_setting('pacelc.commit_lsn') = :'t1' AS reported_same;});
	my @lines = split /\n/, $out;
	my ($wrote, $same, $rsame) = split /\|/, $lines[-1];
	note "read-only SELECT wrote WAL: $wrote";
	is("$same|$rsame", 't|t', "item 9: the token stays at the last commit that wrote something (WAL written by the read: $wrote)");
}

# 11. (cost/behaviour of seen_lsn per transaction is in 023)

# 10. after promotion, a token this node never replayed is an error
{
	$primary->wait_for_catchup($standby);
	$standby->safe_psql('postgres', q{ALTER SYSTEM SET primary_conninfo = ''; SELECT pg_reload_conf();});
	$standby->poll_query_until('postgres', q{SELECT count(*) = 0 FROM pg_stat_wal_receiver}) or die;
	$primary->safe_psql('postgres', q{INSERT INTO big SELECT g, repeat('x', 1000) FROM generate_series(1, 3000) g});
	my $tok = write_row('lost');
	$standby->promote;
	$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()') or die;
	my $d = LsnDriver->new($sconn);
	my $ans = $d->cmd('Q', "SET pacelc.read_after = '$tok'; " . count_sql('lost'));
	like($ans, qr/^ERR PC012 /, "item 10: read_after beyond this node's history: PC012 ($ans)");
	$ans = $d->cmd('Q', "RESET pacelc.read_after; SELECT pacelc.wait_for_lsn('$tok')");
	like($ans, qr/^ERR PC012 /, "item 10: wait_for_lsn too ($ans)");
	my $own = $standby->safe_psql('postgres', q{INSERT INTO t (note) VALUES ('new'); SELECT pacelc.commit_lsn()});
	is($d->cmd('Q', "SET pacelc.read_after = '$own'; SELECT count(*) FROM t WHERE note = 'new'"), 'OK 1',
		'a token written on this node as a primary is fine');
	$d->quit;
}

$standby->stop;
$primary->stop;
done_testing();
