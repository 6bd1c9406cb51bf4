# Two-phase commit stress: clients reserve, confirm, release and restock in
# transactions that PREPARE, then COMMIT PREPARED or ROLLBACK PREPARED; some
# are left prepared and finished by another session.  The postmaster is
# killed with SIGKILL in the middle, leaving prepared transactions in doubt:
# after the restart, while they are still prepared, the stock sells out (no
# oversell when they then commit), more load runs, and then they are
# finished.  At each stage verify() is clean, and at the end every SKU has
# stocked = held + confirmed + available with the escrow counter exact.  A
# standby promoted with a prepared transaction in flight finishes it exactly.
use strict;
use warnings FATAL => 'all';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use PacelcTest;
use Time::HiRes qw(usleep);

my $initial = 3000;

my $node = pacelc_node('twophase', allows_streaming => 1, conf => qq{
max_connections = 60
max_prepared_transactions = 100
restart_after_crash = on
# a statement blocked behind a prepared transaction fails instead of hanging
lock_timeout = '20s'
log_statement = none
});
$node->safe_psql('postgres', qq{
	CREATE EXTENSION pacelc;
	SELECT pacelc.set_stock(s, $initial) FROM unnest('{t1,t2,t3,t4}'::text[]) s;
	-- restocks, recorded in the restocking transaction: committed with it
	CREATE TABLE restocked (sku text, qty bigint);
});

my $script = <<'SQL';
\set r random(1, 100)
\set q random(1, 3)
\set s random(1, 3)
\set n random(1, 1000000000)
BEGIN;
SELECT coalesce(pacelc.try_reserve('t' || :s, :q), 0) AS id \gset
\if :r <= 15
SELECT pacelc.add_stock('t' || :s, 2);
INSERT INTO restocked VALUES ('t' || :s, 2);
\elif :r <= 30
\if :id > 0
SELECT pacelc.release(:id);
\endif
\elif :r <= 45
\if :id > 0
SELECT pacelc.confirm(:id);
\endif
\elif :r <= 60
SELECT coalesce((SELECT id FROM pacelc.reservation_data
                  WHERE state = 'held' AND id <> :id
                  LIMIT 1 FOR UPDATE SKIP LOCKED), 0) AS old \gset
\if :old > 0
SELECT pacelc.release(:old);
\endif
\elif :r <= 70
SAVEPOINT a;
SELECT pacelc.try_reserve('t' || :s, 2);
ROLLBACK TO SAVEPOINT a;
\endif
PREPARE TRANSACTION 'g:client_id.:n';
\set f random(1, 100)
\if :f <= 46
COMMIT PREPARED 'g:client_id.:n';
\elif :f <= 92
ROLLBACK PREPARED 'g:client_id.:n';
\endif
SQL

# The same without restocks, for load beside transactions in doubt: a
# restock locks the SKU row, and so waits for a prepared restock of it.
(my $script_no_restock = $script) =~
  s/SELECT pacelc.add_stock[^\n]*\n[^\n]*\n/SELECT pacelc.available('t' || :s);\n/;

# Finishes the prepared transactions left for another session, half
# committed, half rolled back; returns how many.
sub finish_prepared
{
	my ($n, $older) = @_;
	my $gids = $node->safe_psql('postgres', qq{
		SELECT gid FROM pg_prepared_xacts
		 WHERE prepared < now() - interval '$older'});
	my $done = 0;
	foreach my $gid (split /\n/, $gids)
	{
		my $how = ($n + $done) % 2 ? 'COMMIT' : 'ROLLBACK';
		my ($ret) = $node->psql('postgres', "$how PREPARED '$gid'");
		$done++ if $ret == 0;
	}
	return $done;
}

# The books of every SKU: stocked (initial + committed restocks) =
# held + confirmed + available, and the escrow counter equals available.
sub check_books
{
	my ($label, %opt) = @_;
	# a backend of an aborted client gives its units back while it exits
	wait_for_quiet($node) or die 'the load\'s backends did not exit';
	is($node->safe_psql('postgres', 'SELECT count(*) FROM pacelc.verify()'),
		'0', "$label: verify() is clean");
	my $rows = $node->safe_psql('postgres', qq{
		SELECT k.sku, $initial + coalesce((SELECT sum(qty) FROM restocked r WHERE r.sku = k.sku), 0),
		       coalesce((SELECT sum(qty) FROM pacelc.reservations r WHERE r.sku = k.sku AND state = 'held'), 0),
		       coalesce((SELECT sum(qty) FROM pacelc.reservations r WHERE r.sku = k.sku AND state = 'confirmed'), 0),
		       k.available, pacelc.available(k.sku)
		  FROM pacelc.stock k ORDER BY k.sku});
	foreach my $row (split /\n/, $rows)
	{
		my ($sku, $stocked, $held, $confirmed, $available, $escrow) = split /\|/, $row;
		note "$label: $sku stocked $stocked held $held confirmed $confirmed available $available escrow $escrow";
		ok($held + $confirmed <= $stocked, "$label: $sku not oversold");
		if ($opt{exact})
		{
			is($held + $confirmed + $available, $stocked,
				"$label: $sku stocked = held + confirmed + available");
			is($escrow, $available, "$label: $sku escrow counter exact");
		}
		else
		{
			ok($escrow <= $available, "$label: $sku escrow promises no more than the tables");
		}
	}
}

# 1. load, with another session finishing what clients leave prepared
my $h = start_pgbench($node, $script, clients => 8, seconds => 5);
my $finished = 0;
for my $i (1 .. 20)
{
	usleep(250_000);
	$finished += finish_prepared($i, '300 ms');
}
$h->finish;
$finished += finish_prepared(0, '0');
ok($finished > 0, "another session finished $finished prepared transactions");
check_books('after 2PC load', exact => 1);
my $commits = $node->safe_psql('postgres',
	q{SELECT count(*) FROM pacelc.reservations WHERE state <> 'held'});
ok($commits > 0, "reservations ended: $commits");

# 2. SIGKILL the postmaster (and its children) under load: prepared
# transactions stay in doubt
$h = start_pgbench($node, $script, clients => 8, seconds => 30);
usleep(2_000_000);
my $pm = $node->{_pid};
my @children = split /\s+/, `pgrep -P $pm`;
kill 'KILL', $pm;
kill 'KILL', grep { /^\d+$/ } @children;
$h->finish;
for (1 .. 100)
{
	last unless kill 0, $pm;
	usleep(100_000);
}
$node->{_pid} = undef;
$node->start;
my $in_doubt = $node->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts');
note "prepared transactions in doubt after the restart: $in_doubt";
# make sure some are in doubt, with holds, restocks and releases (t4: the
# SKU row of the others may be locked by a restock in doubt)
$node->safe_psql('postgres', q{
	BEGIN;
	SELECT pacelc.reserve('t1', 5);
	SELECT pacelc.add_stock('t4', 7);
	INSERT INTO restocked VALUES ('t4', 7);
	SELECT pacelc.release(id) FROM (SELECT id FROM pacelc.reservation_data
	 WHERE state = 'held' AND sku = 't3' LIMIT 1 FOR UPDATE SKIP LOCKED) s;
	PREPARE TRANSACTION 'doubt1';
	BEGIN;
	SELECT pacelc.reserve('t3', 4);
	SELECT pacelc.confirm(pacelc.reserve('t2', 1));
	PREPARE TRANSACTION 'doubt2';
});
$node->stop('immediate');
$node->start;
ok($node->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts') >= 2,
	'prepared transactions survive the restarts');
check_books('in doubt, after restart');

# 3. sell out while they are in doubt, then commit them all: no oversell
$node->safe_psql('postgres', q{
	DO $$ DECLARE s text; BEGIN
	  FOREACH s IN ARRAY '{t1,t2,t3,t4}'::text[] LOOP
	    WHILE pacelc.try_reserve(s, 50) IS NOT NULL LOOP END LOOP;
	    WHILE pacelc.try_reserve(s, 1) IS NOT NULL LOOP END LOOP;
	  END LOOP;
	END $$});
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM unnest('{t1,t2,t3,t4}'::text[]) s WHERE pacelc.available(s) > 0}),
	'0', 'sold out while prepared transactions are in doubt');
check_books('sold out, in doubt');
my $gids = $node->safe_psql('postgres', 'SELECT gid FROM pg_prepared_xacts');
$node->safe_psql('postgres', "COMMIT PREPARED '$_'") foreach split /\n/, $gids;
check_books('in-doubt transactions committed', exact => 1);

# 4. free units again, load with a kill in the middle, finish in doubt
# transactions from another session after the restart, mixing outcomes
$node->safe_psql('postgres', q{
	SELECT pacelc.release(id) FROM pacelc.reservations WHERE state = 'held'});
check_books('released', exact => 1);
$h = start_pgbench($node, $script, clients => 8, seconds => 30);
usleep(2_000_000);
$node->stop('immediate');
$h->finish;
$node->start;
$in_doubt = $node->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts');
note "in doubt after the second crash: $in_doubt";
check_books('second crash, in doubt');
# load while they are in doubt (the rebuild reads their row versions)
$h = start_pgbench($node, $script_no_restock, clients => 4, seconds => 3);
$h->finish;
check_books('load beside in-doubt transactions');
finish_prepared(1, '0');
check_books('all finished after the second crash', exact => 1);
is($node->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'),
	'0', 'nothing left prepared');

# 5. a standby promoted with a prepared transaction in flight
my $standby = pacelc_standby($node, 'standby');
$node->safe_psql('postgres', q{
	BEGIN;
	SELECT pacelc.reserve('t1', 3);
	SELECT pacelc.add_stock('t4', 10);
	INSERT INTO restocked VALUES ('t4', 10);
	PREPARE TRANSACTION 'flight';
});
$node->wait_for_catchup($standby);
my $before = $node->safe_psql('postgres',
	q{SELECT string_agg(available::text, ',' ORDER BY sku) FROM pacelc.stock WHERE sku IN ('t1', 't4')});
my ($t1, $t4) = split /,/, $before;
$node->stop('immediate');
$standby->promote;
$node = $standby;    # check_books and finish_prepared use $node
is($node->safe_psql('postgres', q{SELECT pacelc.available('t1') || ',' || pacelc.available('t4')}),
	($t1 - 3) . ",$t4", 'promoted: the prepared hold counts, the restock does not yet');
check_books('promoted, in doubt');
$node->safe_psql('postgres', q{COMMIT PREPARED 'flight'});
is($node->safe_psql('postgres', q{SELECT pacelc.available('t1') || ',' || pacelc.available('t4')}),
	($t1 - 3) . ',' . ($t4 + 10), 'promoted: COMMIT PREPARED applies the restock');
check_books('promoted, finished', exact => 1);

$node->stop;
done_testing();
