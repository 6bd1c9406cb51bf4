# Shared-memory SKU slots in a long-lived cluster (issue 13 item 3), with
# pacelc.max_skus = 100:
#  - a set_stock() of a new SKU that rolls back frees its slot;
#  - DROP DATABASE and DROP EXTENSION free the slots of what they dropped;
#  - when memory is full, a SKU that does not exist is PC002, not 53200;
#  - one hold whose SKU cannot get a slot does not stop the expiry of others;
#  - pacelc.max_skus below its minimum stops the server from starting.
use strict;
use warnings FATAL => 'all';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use PacelcTest;

my $node = pacelc_node('slots', conf => qq{
pacelc.max_skus = 100
# no worker: this test expires holds itself
pacelc.databases = 'no_such_database'
});
$node->safe_psql('postgres', q{CREATE EXTENSION pacelc});

sub sqlstate
{
	my ($db, $sql) = @_;
	my ($ret, $out, $err) = $node->psql($db, "\\set VERBOSITY verbose\n$sql");
	return $err =~ /ERROR:\s+([0-9A-Z]{5}):/ ? $1 : 'ok';
}

# 150 creates that roll back (whole transaction, or a savepoint)
for my $i (1 .. 75)
{
	$node->psql('postgres',
		"BEGIN; SELECT pacelc.set_stock('rb$i', 1); ROLLBACK;");
	$node->psql('postgres',
		"BEGIN; SAVEPOINT a; SELECT pacelc.set_stock('sp$i', 1); ROLLBACK TO a; COMMIT;");
}
is(sqlstate('postgres', q{SELECT pacelc.set_stock('s' || i, 5) FROM generate_series(1, 100) i}),
	'ok', 'rolled-back creates left their slots free: 100 new SKUs fit');
is(sqlstate('postgres', q{SELECT pacelc.set_stock('s101', 5)}), '53200',
	'the 101st SKU is refused');
is(sqlstate('postgres', q{SELECT pacelc.available('nosuch')}), 'PC002',
	'full memory: a SKU that does not exist is PC002 (available)');
is(sqlstate('postgres', q{SELECT pacelc.reserve('nosuch')}), 'PC002',
	'full memory: a SKU that does not exist is PC002 (reserve)');
is(sqlstate('postgres', q{SELECT pacelc.add_stock('nosuch', 1)}), 'PC002',
	'full memory: a SKU that does not exist is PC002 (add_stock)');

# DROP EXTENSION frees the slots of its SKUs
$node->safe_psql('postgres', q{DROP EXTENSION pacelc; CREATE EXTENSION pacelc});
is(sqlstate('postgres', q{SELECT pacelc.set_stock('t' || i, 5) FROM generate_series(1, 100) i}),
	'ok', 'after DROP EXTENSION, 100 new SKUs fit');

# a DROP EXTENSION that rolls back frees nothing: the counters stay exact
$node->safe_psql('postgres', q{SELECT pacelc.reserve('t1', 5)});
$node->safe_psql('postgres', q{BEGIN; DROP EXTENSION pacelc; ROLLBACK;});
is($node->safe_psql('postgres', q{SELECT pacelc.try_reserve('t1') IS NULL}), 't',
	'a rolled-back DROP EXTENSION keeps the counters');

# DROP DATABASE frees the slots of its SKUs
$node->safe_psql('postgres', q{DROP EXTENSION pacelc});
$node->safe_psql('postgres', q{CREATE DATABASE shop2});
$node->safe_psql('shop2', q{CREATE EXTENSION pacelc;
	SELECT pacelc.set_stock('u' || i, 5) FROM generate_series(1, 100) i});
$node->safe_psql('postgres', q{CREATE EXTENSION pacelc});
is(sqlstate('postgres', q{SELECT pacelc.set_stock('w1', 5)}), '53200',
	'shop2 holds every slot');
$node->safe_psql('postgres', q{DROP DATABASE shop2});
is(sqlstate('postgres', q{SELECT pacelc.set_stock('w' || i, 5) FROM generate_series(1, 100) i}),
	'ok', 'after DROP DATABASE, 100 new SKUs fit');

# Expiry: 99 holds on SKUs in memory and one on a SKU that cannot get a
# slot.  The other 99 expire; the one left is retried later.
$node->safe_psql('postgres', q{DROP EXTENSION pacelc; CREATE EXTENSION pacelc;
	SELECT pacelc.set_stock('a' || i, 5) FROM generate_series(1, 99) i;
	SELECT pacelc.set_stock('z', 5);
	SELECT pacelc.reserve('a' || i, 1, '1 second') FROM generate_series(1, 99) i;
	SELECT pacelc.reserve('z', 1, '1 second');});
$node->restart;
$node->safe_psql('postgres', q{SELECT count(pacelc.available('a' || i)) FROM generate_series(1, 99) i});
$node->safe_psql('postgres', q{CREATE DATABASE shop3});
$node->safe_psql('shop3', q{CREATE EXTENSION pacelc; SELECT pacelc.set_stock('b', 1)});
$node->poll_query_until('postgres', q{
	SELECT clock_timestamp() > max(expires_at) FROM pacelc.reservations WHERE state = 'held'})
  or die 'the holds do not come due';
my ($ret, $out, $err) = $node->psql('postgres', q{SELECT pacelc.expire_holds()});
is($out, '99', 'expire_holds() expired the 99 holds it could');
like($err, qr/could not expire reservation \d+ of sku "z": too many SKUs/,
	'and warned about the one it could not');
is($node->safe_psql('postgres',
		q{SELECT string_agg(sku, ',') FROM pacelc.reservations WHERE state = 'held'}),
	'z', 'only the hold of z is still held');
$node->safe_psql('postgres', q{DROP DATABASE shop3});
is($node->safe_psql('postgres', q{SELECT pacelc.expire_holds()}), '1',
	'once a slot is free, z expires too');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pacelc.verify()}), '0',
	'verify() clean');

# pacelc.max_skus below its minimum (or not a number) is a startup error
$node->stop;
for my $bad ('50', 'lots')
{
	$node->append_conf('postgresql.conf', "pacelc.max_skus = '$bad'\n");
	my $log_start = -s $node->logfile;
	ok(!$node->start(fail_ok => 1), "the server does not start with pacelc.max_skus = $bad");
	my $log = slurp_file($node->logfile, $log_start);
	like($log, qr/FATAL:.*pacelc\.max_skus/, 'and says why');
}
$node->append_conf('postgresql.conf', "pacelc.max_skus = 100\n");
ok($node->start(fail_ok => 1), 'it starts again with a valid value');
$node->stop;
done_testing();
