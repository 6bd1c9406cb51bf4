# Without shared_preload_libraries every entry point fails cleanly with
# SQLSTATE 55000 and a hint, never a crash.
use strict;
use warnings FATAL => 'all';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('nopreload');
$node->init;
$node->start;

$node->safe_psql('postgres', 'CREATE EXTENSION pacelc');

for my $call (
	q{SELECT pacelc.set_stock('a', 1)},
	q{SELECT pacelc.add_stock('a', 1)},
	q{SELECT pacelc.reserve('a')},
	q{SELECT pacelc.try_reserve('a')},
	q{SELECT pacelc.reserve_all('{a}', '{1}')},
	q{SELECT pacelc.confirm(1)},
	q{SELECT pacelc.release(1)},
	q{SELECT pacelc.available('a')},
	q{SELECT pacelc.expire_holds()},
	q{SELECT pacelc.next_expiry()},
	q{SELECT pacelc.fold_confirmed()},
	q{SELECT * FROM pacelc.verify()})
{
	my ($ret, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\n$call");
	like($err, qr/55000: pacelc must be loaded via "shared_preload_libraries"/,
		"$call fails with 55000");
	like($err, qr/HINT:  Add pacelc to "shared_preload_libraries"/,
		"$call hints at the fix");
}

# the server survived all of it
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'server still up');

# and with the library preloaded it works
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'pacelc'");
$node->restart;
$node->safe_psql('postgres', q{SELECT pacelc.set_stock('a', 1)});
is($node->safe_psql('postgres', q{SELECT pacelc.reserve('a') > 0}),
	't', 'works once preloaded');

$node->stop;
done_testing();
