# The expiry floor beside a long transaction (issue 15, goal 3, for holds).
# The workers expire holds every 250 ms and plan when the next hold
# expires; both read the expiry index (expires_at, of held holds).  Beside
# a long transaction that index keeps an entry for every hold ended since
# it began (confirmed, released, expired), and each of those reads
# stepped over all of them: behind the snapshot, 30,000 ended holds made
# the workers read about 10^6 entries a second.  They now start at an
# expiry floor and the plan stops at the next naptime.  The floor never
# passes a hold that can still expire: one made by a transaction that
# stayed open while the floors rose, and one made by a prepared
# transaction, expire on time.
use strict;
use warnings FATAL => 'all';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use PacelcTest;

my $node = pacelc_node('qfloors_expiry', conf => q{
pacelc.launcher_naptime = 1s
pacelc.worker_naptime = 1s
pacelc.workers_per_database = 2
max_prepared_transactions = 2
});
$node->safe_psql('postgres', 'CREATE EXTENSION pacelc;' . shop_role_sql() . q{
	SELECT pacelc.set_stock('tee', 1000000);
	SELECT pacelc.set_stock('ghost', 1000000);
});

sub index_read
{
	return $node->safe_psql('postgres', q{
		SELECT idx_tup_read FROM pg_stat_all_indexes
		 WHERE indexrelid = 'pacelc.reservation_data_expiry_idx'::regclass});
}

# the hold $id expired within $limit seconds
sub expired_within
{
	my ($id, $limit) = @_;
	my ($secs) = wait_for_value($node,
		"SELECT state FROM pacelc.reservations WHERE id = $id", 'expired', $limit);
	note(defined $secs
		? sprintf('hold %d expired %.1f s after the check began', $id, $secs)
		: "hold $id not expired within $limit s");
	return defined $secs;
}

sub reserve
{
	my ($ttl) = @_;
	return $node->safe_psql('postgres',
		"SET ROLE regress_pacelc_shop; SELECT pacelc.reserve('tee', 1, ttl => '$ttl')");
}

my $id = reserve('1 s');
ok(expired_within($id, 5), 'a hold expires');
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'pacelc worker'}),
	'two workers serve the database');

# the long transaction: REPEATABLE READ, its snapshot taken
my $long = $node->background_psql('postgres');
$long->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
$long->query_safe('SELECT count(*) FROM pg_class');

# behind it, the entries of 60,000 ended holds: half that expired in the
# last hour, half that would have expired in the next ten minutes (held
# holds released at once, in one statement)
$node->safe_psql('postgres', q{
	BEGIN;
	INSERT INTO pacelc.reservation_data (sku, qty, expires_at)
	SELECT 'ghost', 1, now() - interval '1 hour' + interval '59 minutes' * (i / 30000.0)
	  FROM generate_series(1, 30000) i;
	INSERT INTO pacelc.reservation_data (sku, qty, expires_at)
	SELECT 'ghost', 1, now() + interval '10 minutes' * (i / 30000.0)
	  FROM generate_series(1, 30000) i;
	UPDATE pacelc.reservation_data SET state = 'released', ended_at = now()
	 WHERE sku = 'ghost';
	COMMIT});
sleep 2;	# past a first expiry from the start
my $before = index_read();
sleep 6;
my $read = index_read() - $before;
# from the start, each of the ~4 expiry checks a second read the 30,000
# past entries and each plan all 60,000 (about 10^6 a second); from the
# floor, at most a full check or two in 6 s (each ~60,000)
ok($read < 200_000, "the expiry scans skip the ended holds ($read index entries read in 6 s)");

# a hold made by a transaction that stays open while the floors rise,
# past its expiry when it commits: it expires at once
my $open = $node->background_psql('postgres');
$open->query_safe('BEGIN');
my $late = $open->query_safe(
	q{SET ROLE regress_pacelc_shop; SELECT pacelc.reserve('tee', 1, ttl => '1 s')});
$late =~ s/\s+//g;
sleep 4;
$open->query_safe('COMMIT');
ok(expired_within($late, 2), 'a hold committed after its expiry expires at once');
$open->quit;

# the same from a prepared transaction, which the horizon does not show:
# its COMMIT PREPARED sends the floor back to the start
my $twopc = $node->background_psql('postgres');
$twopc->query_safe('BEGIN');
my $prepared = $twopc->query_safe(
	q{SET LOCAL ROLE regress_pacelc_shop; SELECT pacelc.reserve('tee', 1, ttl => '1 s')});
$prepared =~ s/\s+//g;
$twopc->query_safe(q{PREPARE TRANSACTION 'pacelc_hold'});
$twopc->quit;
sleep 4;
$node->safe_psql('postgres', q{COMMIT PREPARED 'pacelc_hold'});
ok(expired_within($prepared, 2), 'a hold committed by COMMIT PREPARED after its expiry expires at once');

# and one made now
$id = reserve('1 s');
ok(expired_within($id, 5), 'a new hold expires beside the long transaction');

$long->query_safe('COMMIT');
$long->quit;
is($node->safe_psql('postgres', 'SELECT count(*) FROM pacelc.verify()'), '0', 'verify() finds nothing');
is($node->safe_psql('postgres', q{SELECT held FROM pacelc.stock WHERE sku = 'tee'}), '0',
	'no hold of "tee" left');
$node->stop;
done_testing();
