# Hot-SKU load on a primary with a streaming standby; the primary dies
# (immediate stop) in the middle, the standby is promoted and the load goes on
# there.  The promoted node rebuilds its escrow counters from the replicated
# tables: verify() is clean, counters equal on_hand - held, and held + sold
# never exceed what was stocked.
use strict;
use warnings FATAL => 'all';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use PacelcTest;

my $stocked = 50000;

my $primary = pacelc_node('primary', allows_streaming => 1, conf => qq{
max_connections = 40
log_statement = none
});
$primary->safe_psql('postgres', qq{
	CREATE EXTENSION pacelc;
	SELECT pacelc.set_stock('hot', $stocked);
	SELECT pacelc.set_stock('cold', 10);
});
my $standby = pacelc_standby($primary, 'standby', backup => 'b');

my $script = <<'SQL';
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


sub books
{
	my ($node, $label) = @_;
	wait_for_quiet($node) or die 'the load\'s backends did not exit';
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
# let the standby receive some sales before the primary dies
$standby->poll_query_until('postgres', q{
	SELECT count(*) >= 50 FROM pacelc.reservation_data WHERE state = 'confirmed'})
  or die 'no sale reached the standby';
$primary->stop('immediate');
$h->finish;
$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()') or die;
my ($held1, $sold1) = books($standby, 'promoted standby');
ok($sold1 > 0, "the primary had sold $sold1 before it died");

$standby->pgbench('-n -c 16 -j 2 -T 4', 0, [qr/actually processed/], [],
	'load on the promoted node', { 'buy' => $script });
my ($held2, $sold2) = books($standby, 'after more load on the promoted node');
ok($sold2 > $sold1, "the promoted node went on selling ($sold2)");

# the promoted node serves the untouched SKU too
is($standby->safe_psql('postgres', q{SELECT pacelc.available('cold')}), '10',
	'a SKU untouched by the load');

$standby->stop;
done_testing();
