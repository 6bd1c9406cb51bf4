# A standby refuses writes with the ordinary read-only error and answers
# available() from its tables; after promotion the escrow counters are
# rebuilt from the replicated tables and reservations go on exactly.
# pg_dump / pg_restore keeps stock and reservations.
use strict;
use warnings FATAL => 'all';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use PacelcTest;

my $primary = pacelc_node('primary', allows_streaming => 1);
$primary->safe_psql('postgres', q{
	CREATE EXTENSION pacelc;
	SELECT pacelc.set_stock('tv', 10);
	SELECT pacelc.set_stock('radio', 3);
	SELECT pacelc.reserve('tv', 2, idempotency_key => 'k1');
	SELECT pacelc.confirm(pacelc.reserve('tv', 3));
	SELECT pacelc.release(pacelc.reserve('radio', 1));
	SELECT pacelc.reserve('radio', 1, ttl => '1 hour', on_expire => '{"cart": 7}');
});
$primary->backup('b1');

my $standby = pacelc_standby($primary, 'standby', backup => 'b1');
$primary->safe_psql('postgres', q{SELECT pacelc.reserve('tv', 1)});
$primary->wait_for_catchup($standby);

# reads work on the standby, from the tables
is($standby->safe_psql('postgres', q{SELECT pacelc.available('tv')}),
	'4', 'available() on the standby');
is($standby->safe_psql('postgres', q{SELECT count(*) FROM pacelc.verify()}),
	'0', 'verify() on the standby');

# writes fail with PostgreSQL's ordinary read-only error
for my $call (q{SELECT pacelc.reserve('tv')}, q{SELECT pacelc.set_stock('tv', 1)},
	q{SELECT pacelc.add_stock('tv', 1)}, q{SELECT pacelc.release(1)},
	q{SELECT pacelc.confirm(1)}, q{SELECT pacelc.reserve_all('{tv}', '{1}')},
	q{SELECT pacelc.expire_holds()})
{
	my ($ret, $out, $err) = $standby->psql('postgres', "\\set VERBOSITY verbose\n$call");
	like($err, qr/25006: cannot execute .* in a read-only transaction/,
		"$call is refused on the standby");
}

# promote: counters come from the replicated tables
$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()') or die;
is($standby->safe_psql('postgres', q{SELECT pacelc.available('tv')}),
	'4', 'available() after promotion');
is($standby->safe_psql('postgres', q{SELECT pacelc.try_reserve('tv', 5) IS NULL}),
	't', 'cannot oversell after promotion');
$standby->safe_psql('postgres', q{SELECT pacelc.reserve('tv', 4)});
is($standby->safe_psql('postgres', q{SELECT pacelc.available('tv')}),
	'0', 'sold the rest after promotion');
is($standby->safe_psql('postgres', q{SELECT pacelc.reserve('tv', 2, idempotency_key => 'k1') = 1}),
	't', 'idempotency key survives promotion');
is($standby->safe_psql('postgres', q{SELECT count(*) FROM pacelc.verify()}),
	'0', 'verify() after promotion');

# pg_dump / pg_restore into a new database keeps everything
my $dump = $primary->basedir . '/pacelc.dump';
$primary->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $primary->connstr('postgres') ],
	'pg_dump');
$primary->safe_psql('postgres', 'CREATE DATABASE restored');
$primary->command_ok([ 'pg_restore', '-d', $primary->connstr('restored'), $dump ],
	'pg_restore');
my $q = q{SELECT string_agg(format('%s:%s/%s/%s', sku, on_hand, held, available), ' ' ORDER BY sku) FROM pacelc.stock};
is($primary->safe_psql('restored', $q), $primary->safe_psql('postgres', $q),
	'stock restored');
my $r = q{SELECT string_agg(format('%s:%s:%s:%s:%s', id, sku, qty, state, idempotency_key), ' ' ORDER BY id) FROM pacelc.reservations};
is($primary->safe_psql('restored', $r), $primary->safe_psql('postgres', $r),
	'reservations restored');
is($primary->safe_psql('restored', q{SELECT count(*) FROM pacelc.verify()}),
	'0', 'verify() on the restored database');
is($primary->safe_psql('restored', q{SELECT pacelc.available('tv') || ',' || pacelc.available('radio')}),
	'4,2', 'escrow counters of the restored database');
ok($primary->safe_psql('restored', q{SELECT pacelc.reserve('radio', 2)}) >
	$primary->safe_psql('postgres', q{SELECT max(id) FROM pacelc.reservations}),
	'restored sequence continues after the restored ids');

$standby->stop;
$primary->stop;
done_testing();
