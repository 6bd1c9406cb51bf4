# Stress: 16 clients hammer one SKU with random rollbacks, savepoint
# rollbacks, releases and confirms, while backends are terminated; then a
# backend is killed with SIGKILL (crash restart of shared memory) and later
# every process of the server, postmaster first, is killed with SIGKILL (each
# of those two loads starts with the SKU restocked, and must be running, 200
# reservations made, before the kill).  After each restart verify() is clean,
# the escrow counter equals on_hand - held of the tables, and units held +
# confirmed never exceed units stocked.  Then buyers that rebuild the
# counter after a restart are terminated in the middle of it, and the buyers
# waiting for them go on.  Last, the SKU sells out exactly.
use strict;
use warnings FATAL => 'all';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use PacelcTest;
use Time::HiRes qw(usleep);

# What each load starts with.  16 clients on two cores sell about 15,000
# units a second (held or confirmed), pg_terminate_backend or not: a 6 s load
# can sell 100,000 (it did, and the next load then only got NULL and made
# no reservation).  restock() tops the SKU up to this before each load.
my $initial = 300000;
my $stocked = $initial;    # units added so far, restocks included
my $clients = 16;

my $node = pacelc_node('stress', conf => qq{
max_connections = 60
restart_after_crash = on
log_statement = none
});
$node->safe_psql('postgres', qq{
	CREATE EXTENSION pacelc;
	SELECT pacelc.set_stock('hot', $stocked);
});

my $script = <<'SQL';
\set r random(1, 100)
\set q random(1, 3)
BEGIN;
SELECT coalesce(pacelc.try_reserve('hot', :q), 0) AS id \gset
\if :r <= 15
ROLLBACK;
\elif :r <= 30
SAVEPOINT a;
SELECT pacelc.try_reserve('hot', 2);
ROLLBACK TO SAVEPOINT a;
COMMIT;
\elif :r <= 40
\if :id > 0
SELECT pacelc.release(:id);
\endif
COMMIT;
\elif :r <= 45
SELECT pacelc.try_reserve('hot', 1);
COMMIT;
\else
COMMIT;
\if :id > 0
SELECT pacelc.confirm(:id);
\endif
\endif
SQL


sub check_books
{
	my ($label) = @_;
	$node->poll_query_until('postgres', 'SELECT true') or die;
	# a terminated backend gives its units back while it exits, after
	# pgbench saw its connection end
	wait_for_quiet($node) or die 'the load\'s backends did not exit';
	is($node->safe_psql('postgres', 'SELECT count(*) FROM pacelc.verify()'),
		'0', "$label: verify() is clean");
	my $row = $node->safe_psql('postgres', q{
		SELECT coalesce(sum(qty) FILTER (WHERE state = 'held'), 0) || ',' ||
		       coalesce(sum(qty) FILTER (WHERE state = 'confirmed'), 0)
		  FROM pacelc.reservations WHERE sku = 'hot'});
	my ($held, $sold) = split /,/, $row;
	note "$label: held $held, sold $sold, stocked $stocked";
	ok($held + $sold <= $stocked, "$label: held + sold <= stocked");
	is($node->safe_psql('postgres',
			q{SELECT on_hand || ',' || held || ',' || available || ',' || pacelc.available(sku) FROM pacelc.stock WHERE sku = 'hot'}),
		join(',', $stocked - $sold, $held, $stocked - $sold - $held, $stocked - $sold - $held),
		"$label: tables and escrow counter agree");
	return ($held, $sold);
}

# Adds what the loads before have taken, so that the next one finds
# $initial units available whatever they sold: a sold-out SKU gives a load
# nothing to reserve.
sub restock
{
	my $taken = $node->safe_psql('postgres',
		"SELECT $initial - available FROM pacelc.stock WHERE sku = 'hot'");
	return if $taken <= 0;
	$node->safe_psql('postgres', "SELECT pacelc.add_stock('hot', $taken)");
	$stocked += $taken;
	note "restocked $taken units: $stocked stocked in all";
}

# Waits until the load (harness h of start_pgbench, its output in out and
# err) has made 200 more reservations than before it began.  If it does
# not, within the usual timeout or before pgbench ends, the test dies after
# printing what the load was doing, what it waited for and the stock.
sub load_running
{
	my ($h, $out, $err) = @_;
	my $seq = 'SELECT last_value FROM pacelc.reservation_id_seq';
	my $before = $node->safe_psql('postgres', $seq);
	my $t0 = time;
	my $made = 0;

	while (time - $t0 < $PostgreSQL::Test::Utils::timeout_default)
	{
		my $alive = $h->pumpable;
		$made = $node->safe_psql('postgres', $seq) - $before;
		return if $made >= 200;
		last unless $alive;			# pgbench has ended
		eval { $h->pump_nb; };		# collects its output
		usleep(100_000);
	}
	diag("the load made $made reservations in " . (time - $t0) . " s\n"
		  . describe_load($node, h => $h, out => $out, err => $err,
			label => 'the stock of the SKU',
			sql => q{SELECT s.*, pacelc.available(s.sku) AS escrow_counter
					   FROM pacelc.stock s WHERE sku = 'hot'}));
	die 'the load does not get going';
}

# 1. load with terminated backends
my ($out, $err);
my $h = start_pgbench($node, $script, clients => $clients, seconds => 6);
my $terminated = 0;
for (1 .. 10)
{
	usleep(300_000);
	$terminated += $node->safe_psql('postgres', q{
		SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		 WHERE application_name = 'pgbench' AND pid <> pg_backend_pid()
		   AND random() < 0.2});
}
$h->finish;
ok($terminated > 0, "terminated $terminated backends under load");
my ($held1, $sold1) = check_books('after terminations');
ok($sold1 > 0, "load sold something ($sold1)");

# 2. SIGKILL one backend: the postmaster reinitializes shared memory
restock();
$h = start_pgbench($node, $script, clients => $clients, seconds => 30,
	out => \$out, err => \$err);
load_running($h, \$out, \$err);
my $victim = $node->safe_psql('postgres', q{
	SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench' LIMIT 1});
ok($victim, "found a backend to kill: $victim");
kill 'KILL', $victim;
$h->finish;
ok($node->log_contains('terminated by signal 9'), 'crash restart happened');
my ($held2, $sold2) = check_books('after backend SIGKILL');
ok($sold2 >= $sold1, 'nothing sold was lost');

# 3. SIGKILL the postmaster and then every process it had started
restock();
$h = start_pgbench($node, $script, clients => $clients, seconds => 30,
	out => \$out, err => \$err);
load_running($h, \$out, \$err);
my $pm = $node->{_pid};
my @children = split /\s+/, `pgrep -P $pm`;
kill 'KILL', $pm;
kill 'KILL', grep { /^\d+$/ } @children;
$h->finish;
# wait until the killed postmaster is gone (reaped), then start again
for (1 .. 100)
{
	last unless kill 0, $pm;
	usleep(100_000);
}
$node->{_pid} = undef;    # the pid file is stale; the server cleans it up
$node->start;
my ($held3, $sold3) = check_books('after postmaster SIGKILL');
ok($sold3 >= $sold2, 'nothing sold was lost');

# 3b. the first buyer after a restart rebuilds the SKU's counter from the
# tables while later buyers wait for it.  Terminate it in the middle of that
# load (held up by a table lock), then the buyer that takes the load over:
# once the lock goes, the buyers left, and a new session, get their units at
# once, and the books are exact.
$node->restart;
my $held_rows = q{SELECT count(*) FROM pacelc.reservation_data WHERE state = 'held'};
my $rows_before = $node->safe_psql('postgres', $held_rows);
my $blocker = $node->background_psql('postgres');
$blocker->query_safe(
	'BEGIN; LOCK pacelc.reservation_data IN ACCESS EXCLUSIVE MODE;');
my @buyers;
for (1 .. 4)
{
	my $buyer = $node->background_psql('postgres', on_error_stop => 0);
	$buyer->query_until(qr/sent/, "\\echo sent\nSELECT pacelc.try_reserve('hot', 1);\n");
	push @buyers, $buyer;
}
# buyers loading (waiting for the table lock), buyers waiting for the loader
my $waits = q{
	SELECT count(*) FILTER (WHERE wait_event = 'relation') || ',' ||
		   count(*) FILTER (WHERE wait_event = 'advisory')
	  FROM pg_stat_activity
	 WHERE wait_event_type = 'Lock' AND query LIKE 'SELECT pacelc.try_reserve%'};
# what the buyers do, for a failure
my $buyers_sql = q{
	SELECT pid, state, wait_event_type, wait_event, query FROM pg_stat_activity
	 WHERE query LIKE 'SELECT pacelc.try_reserve%' ORDER BY pid};
$node->poll_query_until('postgres', $waits, '1,3') or do
{
	diag(describe_load($node, label => 'the buyers', sql => $buyers_sql));
	die 'the buyers do not wait for one loader';
};
for my $waiting (2, 1)
{
	is($node->safe_psql('postgres', q{
		SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		 WHERE wait_event_type = 'Lock' AND wait_event = 'relation'
		   AND query LIKE 'SELECT pacelc.try_reserve%'}),
		'1', 'terminated the buyer loading the counter');
	# (a buyer that spun instead of waiting would burn a CPU until the end)
	$node->poll_query_until('postgres', $waits, "1,$waiting") or do
	{
		diag(describe_load($node, label => 'the buyers', sql => $buyers_sql));
		die 'no buyer took the load over';
	};
	pass('another buyer took the load over');
}
$blocker->query_safe('COMMIT');
$blocker->quit;
ok($node->poll_query_until('postgres', "SELECT ($held_rows) = $rows_before + 2"),
	'the two buyers left got their units');
is($node->safe_psql('postgres', q{
		SET statement_timeout = '60s';
		SELECT pacelc.try_reserve('hot', 1) IS NOT NULL}),
	't', 'a new session gets its unit');
eval { $_->quit } for @buyers;    # two of them were terminated
check_books('after terminated loads');

# 4. sell out: run until nothing is left, then every unit is accounted for
$node->safe_psql('postgres', q{
	SELECT pacelc.release(id) FROM pacelc.reservations WHERE state = 'held'});
$node->pgbench("-n -c $clients -j 2 -T 4", 0, [qr/actually processed/], [],
	'sell-out load', { 'buy' => $script });
$node->safe_psql('postgres', q{
	DO $$ BEGIN
	  WHILE pacelc.try_reserve('hot', 100) IS NOT NULL LOOP END LOOP;
	  WHILE pacelc.try_reserve('hot', 1) IS NOT NULL LOOP END LOOP;
	END $$});
my ($held4, $sold4) = check_books('after selling out');
is($held4 + $sold4, $stocked, 'sold out exactly: held + sold = stocked');
is($node->safe_psql('postgres', q{SELECT pacelc.try_reserve('hot') IS NULL}),
	't', 'nothing left to reserve');

$node->stop;
done_testing();
