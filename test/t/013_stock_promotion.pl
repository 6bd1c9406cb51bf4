# Hot-SKU load on a primary with a streaming standby; the primary dies
# (immediate stop) in the middle, the standby is promoted and the load goes on
# there.  The promoted node rebuilds its escrow counters from the replicated
# tables: verify() is clean, counters equal on_hand - held, and held + sold
# never exceed what was stocked.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use PacelcTest;

my $stocked = 50000;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pacelc'
max_connections = 40
log_statement = none
});
$primary->start;
$primary->safe_psql('postgres', qq{
	CREATE EXTENSION pacelc;
	SELECT pacelc.set_stock('hot', $stocked);
	SELECT pacelc.set_stock('cold', 10);
});
$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
$standby->start;

my $script = $primary->basedir . '/buy.sql';
open my $fh, '>', $script or die;
print $fh <<'SQL';
\set r random(1, 100)
BEGIN;
SELECT coalesce(pacelc.try_reserve('hot', 1), 0) AS id \gset
\if :r <= 20
ROLLBACK;
\elif :r <= 30
COMMIT;
\if :id > 0
SELECT pacelc.release(:id);
\endif
\else
COMMIT;
\if :id > 0
SELECT pacelc.confirm(:id);
\endif
\endif
SQL
close $fh;


sub books
{
	my ($node, $label) = @_;
	is($node->safe_psql('postgres', 'SELECT count(*) FROM pacelc.verify()'),
		'0', "$label: verify() is clean");
	my ($held, $sold) = split /,/, $node->safe_psql('postgres', q{
		SELECT coalesce(sum(qty) FILTER (WHERE state = 'held'), 0) || ',' ||
		       coalesce(sum(qty) FILTER (WHERE state = 'confirmed'), 0)
		  FROM pacelc.reservations WHERE sku = 'hot'});
	note "$label: held $held, sold $sold, stocked $stocked";
	ok($held + $sold <= $stocked, "$label: held + sold <= stocked");
	is($node->safe_psql('postgres',
			q{SELECT on_hand || ',' || available || ',' || pacelc.available(sku) FROM pacelc.stock WHERE sku = 'hot'}),
		join(',', $stocked - $sold, $stocked - $sold - $held, $stocked - $sold - $held),
		"$label: tables and escrow counter agree");
	return ($held, $sold);
}

my $h = start_pgbench($primary, $script, seconds => 30);
sleep 3;
$primary->stop('immediate');
$h->finish;
$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()') or die;
my ($held1, $sold1) = books($standby, 'promoted standby');
ok($sold1 > 0, "the primary had sold $sold1 before it died");

$h = start_pgbench($standby, $script, seconds => 4);
$h->finish;
my ($held2, $sold2) = books($standby, 'after more load on the promoted node');
ok($sold2 > $sold1, "the promoted node went on selling ($sold2)");

# the promoted node serves the untouched SKU too
is($standby->safe_psql('postgres', q{SELECT pacelc.available('cold')}), '10',
	'a SKU untouched by the load');

$standby->stop;
done_testing();
