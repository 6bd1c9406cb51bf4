# pacelc.max_skus bounds shared memory: past it, a new SKU gets a clear
# error (53200) while the SKUs already in memory keep working exactly.
# Also: a restart rebuilds counters lazily, one SKU at a time.
use strict;
use warnings FATAL => 'all';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use PacelcTest;
use Time::HiRes qw(time);

my $node = pacelc_node('capacity', conf => qq{
pacelc.max_skus = 100
});
$node->safe_psql('postgres', q{CREATE EXTENSION pacelc});
$node->safe_psql('postgres',
	q{SELECT pacelc.set_stock('s' || i, 5) FROM generate_series(1, 100) i});

my ($ret, $out, $err) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT pacelc.set_stock('s101', 5)");
like($err, qr/53200: too many SKUs for pacelc shared memory/, 'SKU 101 is refused with 53200');
like($err, qr/Increase "pacelc.max_skus"/, 'with a hint');
is($node->safe_psql('postgres', q{SELECT pacelc.reserve('s7', 5) > 0}), 't',
	'existing SKUs keep working');
is($node->safe_psql('postgres', q{SELECT pacelc.try_reserve('s7') IS NULL}), 't',
	'and stay exact');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pacelc.stock}), '100',
	'the refused SKU was not created');

# after a restart only the SKUs that are used take memory
$node->restart;
is($node->safe_psql('postgres', q{SELECT pacelc.available('s7') || ',' || pacelc.available('s8')}),
	'0,5', 'counters rebuilt from the tables after restart');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pacelc.verify()}), '0',
	'verify() clean');

$node->stop;
done_testing();
