# Commit time is linear in the number of SKUs a transaction touched (issue
# 13 item 9): 80,000 new SKUs in one transaction used to take more than a
# second to commit (the per-SKU netting scanned the whole list), and the
# commit cannot be cancelled.  Bounds are generous: the machine may be busy.
use strict;
use warnings FATAL => 'all';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use PacelcTest;

my $node = pacelc_node('commit_time', conf => qq{
pacelc.max_skus = 200000
log_statement = none
});
$node->safe_psql('postgres', q{CREATE EXTENSION pacelc});

# psql reports the COMMIT's own time
sub commit_ms
{
	my ($n, $what) = @_;
	my $out = $node->safe_psql('postgres', qq{
\\timing on
BEGIN;
SELECT count($what) FROM generate_series(1, $n) i;
COMMIT;
});
	my @t = ($out =~ /Time: ([0-9.]+) ms/g);
	return $t[-1];
}

my $small = commit_ms(10000, q{pacelc.set_stock('a' || i, 2)});
my $large = commit_ms(80000, q{pacelc.set_stock('b' || i, 2)});
note "commit of 10,000 new SKUs: $small ms; of 80,000: $large ms";
cmp_ok($large, '<', 400, 'committing 80,000 new SKUs takes well under a second');

# releases are increases applied at commit, too
my $first = $node->safe_psql('postgres', q{
	SELECT min(id) FROM (SELECT pacelc.reserve('b' || i, 1) AS id
						   FROM generate_series(1, 80000) i) r});
my $release = commit_ms(80000, "pacelc.release($first - 1 + i)");
note "commit of 80,000 releases on distinct SKUs: $release ms";
cmp_ok($release, '<', 400, 'and so does committing 80,000 releases');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pacelc.reservations WHERE state = 'released'}),
	'80000', 'all released');

is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pacelc.stock s WHERE s.available <> pacelc.available(s.sku)}),
	'0', 'counters equal the tables');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pacelc.verify()}), '0',
	'verify() clean');
$node->stop;
done_testing();
