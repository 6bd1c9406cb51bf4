# The expiry floor attacked (review of issue 15, goal 3).  The floor rises
# to a second before the oldest transaction holding a transaction id began
# (read before the plan's snapshot), on the argument that a hold expires
# after the clock read that made it.  Two ways around it:
#  - a hold whose clock read comes long before its transaction gets an id:
#    a DBA's BEFORE INSERT trigger (the SQL path) or CHECK constraint (the
#    direct path) that takes a while runs between the two, and a floor
#    raised meanwhile passed the hold before it committed;
#  - COMMIT PREPARED while no worker serves the database (it left for an
#    ALTER DATABASE, crashed, found no slot): the floor stayed where the
#    last worker left it, above the prepared hold, and expire_holds()
#    called by hand starts there.
# Each hold below is past its expiry when it commits; expire_holds() called
# by hand right after must expire it.
use strict;
use warnings FATAL => 'all';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib "$FindBin::RealBin/../perl";
use PacelcTest;

my $node = pacelc_node('qfloors_expiry_attack', conf => q{
pacelc.launcher_naptime = 1s
pacelc.worker_naptime = 1s
pacelc.workers_per_database = 1
max_prepared_transactions = 2
});
$node->safe_psql('postgres', 'CREATE DATABASE shop');
$node->safe_psql('shop', 'CREATE EXTENSION pacelc;' . shop_role_sql() . q{
	SELECT pacelc.set_stock('tee', 1000);
	CREATE FUNCTION public.slow_row() RETURNS trigger LANGUAGE plpgsql
		AS $$BEGIN PERFORM pg_catalog.pg_sleep(3); RETURN NEW; END$$;
	CREATE FUNCTION public.slow_check(bigint) RETURNS boolean LANGUAGE plpgsql
		AS $$BEGIN
			IF pg_catalog.current_setting('attack.slow', true) = 'on' THEN
				PERFORM pg_catalog.pg_sleep(3);
			END IF;
			RETURN true;
		END$$;
});

sub worker_count
{
	return $node->safe_psql('postgres', q{
		SELECT count(*) FROM pg_stat_activity
		 WHERE backend_type = 'pacelc worker' AND datname = 'shop'});
}

# expire_holds() called by hand expires the hold $id (within half a
# second: a worker may be expiring it, with the row locked)
sub expired_by_hand
{
	my ($id) = @_;
	my $t0 = time;
	while (time - $t0 < 0.5)
	{
		$node->safe_psql('shop', 'SELECT pacelc.expire_holds(100)');
		return 1
		  if $node->safe_psql('shop',
			"SELECT state FROM pacelc.reservations WHERE id = $id") eq 'expired';
		usleep(50_000);
	}
	return 0;
}

ok($node->poll_query_until('postgres', q{
		SELECT count(*) = 1 FROM pg_stat_activity
		 WHERE backend_type = 'pacelc worker' AND datname = 'shop'}),
	'a worker serves the database');
# a first hold expires (and the reservation ids' sequence is past the
# nextval() that logs, which would give the transaction its id early)
my $first = $node->safe_psql('shop',
	q{SET ROLE regress_pacelc_shop; SELECT pacelc.reserve('tee', 1, ttl => '500 ms')});
ok($node->poll_query_until('shop',
		"SELECT state = 'expired' FROM pacelc.reservations WHERE id = $first"),
	'a hold expires');
# the floor rises at each housekeeping (every second when idle, here) to
# a second before now (no hold is held)
sleep 3.5;

# (1) a slow BEFORE INSERT trigger: the SQL path's INSERT reads the clock
# (expires_at), runs the trigger, then gets its transaction id
$node->safe_psql('shop', q{
	CREATE TRIGGER slow BEFORE INSERT ON pacelc.reservation_data
		FOR EACH ROW EXECUTE FUNCTION public.slow_row()});
my $id = $node->safe_psql('shop',
	q{SET ROLE regress_pacelc_shop; SELECT pacelc.reserve('tee', 1, ttl => '500 ms')});
ok(expired_by_hand($id),
	'a hold whose trigger ran past its expiry is expired by the next expire_holds()');
$node->safe_psql('shop', 'DROP TRIGGER slow ON pacelc.reservation_data');

# (2) the same on the direct path: a slow CHECK constraint runs between the
# clock read and the insert
$node->safe_psql('shop', q{
	ALTER TABLE pacelc.reservation_data
		ADD CONSTRAINT slow CHECK (public.slow_check(qty)) NOT VALID});
$id = $node->safe_psql('shop', q{SET attack.slow = on; SET ROLE regress_pacelc_shop;
	SELECT pacelc.reserve('tee', 1, ttl => '500 ms')});
ok(expired_by_hand($id),
	'a hold whose CHECK ran past its expiry is expired by the next expire_holds()');
$node->safe_psql('shop', 'ALTER TABLE pacelc.reservation_data DROP CONSTRAINT slow');

# (3) a prepared hold, past its expiry while the floor rises; then the
# worker leaves (an ALTER DATABASE that waits for the database's sessions,
# here in vain: a prepared transaction uses it) and the launcher stays
# away for 10 s, during which the hold is committed
my $twopc = $node->background_psql('shop');
$twopc->query_safe('BEGIN');
$id = $twopc->query_safe(
	q{SET LOCAL ROLE regress_pacelc_shop; SELECT pacelc.reserve('tee', 1, ttl => '500 ms')});
$id =~ s/\s+//g;
$twopc->query_safe(q{PREPARE TRANSACTION 'attack_hold'});
$twopc->quit;
sleep 3.5;
my ($ret, $out, $err) = $node->psql('postgres', 'ALTER DATABASE shop RENAME TO shop_renamed');
like($err, qr/being accessed by other users/, 'the rename waited for the worker, then failed');
is(worker_count(), '0', 'no worker serves the database');
$node->safe_psql('shop', q{COMMIT PREPARED 'attack_hold'});
ok(expired_by_hand($id),
	'a hold committed by COMMIT PREPARED while no worker serves is expired by expire_holds()');

is($node->safe_psql('shop', 'SELECT count(*) FROM pacelc.verify()'), '0', 'verify() finds nothing');
is($node->safe_psql('shop', q{SELECT held FROM pacelc.stock WHERE sku = 'tee'}), '0',
	'no hold of "tee" left');
$node->stop;
done_testing();
