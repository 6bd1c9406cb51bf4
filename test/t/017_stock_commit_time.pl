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

# A busy machine can stall one commit for longer than the bound (370 ms
# was seen for 80,000 new SKUs on a loaded 2-core machine, 30-200 ms is
# usual); the scan this test guards against costs seconds every time.  So
# a commit over the bound is measured again, up to three times in all, and
# the fastest counts.
my $small = commit_ms(10000, q{pacelc.set_stock('a' || i, 2)});
my $large;
for my $try (1 .. 3)
{
	# the SKUs must be new: DROP EXTENSION frees their slots
	$node->safe_psql('postgres', q{DROP EXTENSION pacelc; CREATE EXTENSION pacelc})
	  if $try > 1;
	my $ms = commit_ms(80000, q{pacelc.set_stock('b' || i, 2)});
	note "commit of 80,000 new SKUs, try $try: $ms ms";
	$large = $ms if !defined $large || $ms < $large;
	last if $large < 400;
}
note "commit of 10,000 new SKUs: $small ms; of 80,000: $large ms";
cmp_ok($large, '<', 400, 'committing 80,000 new SKUs takes well under a second');

# releases are increases applied at commit, too
my $release;
my $released = 0;
for my $try (1 .. 3)
{
	my $first = $node->safe_psql('postgres', q{
		SELECT min(id) FROM (SELECT pacelc.reserve('b' || i, 1) AS id
							   FROM generate_series(1, 80000) i) r});
	my $ms = commit_ms(80000, "pacelc.release($first - 1 + i)");
	$released += 80000;
	note "commit of 80,000 releases on distinct SKUs, try $try: $ms ms";
	$release = $ms if !defined $release || $ms < $release;
	last if $release < 400;
}
cmp_ok($release, '<', 400, 'and so does committing 80,000 releases');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pacelc.reservations WHERE state = 'released'}),
	$released, 'all released');

is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pacelc.stock s WHERE s.available <> pacelc.available(s.sku)}),
	'0', 'counters equal the tables');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pacelc.verify()}), '0',
	'verify() clean');
$node->stop;
done_testing();
