# A standby's worker does nothing (messages stay ready, holds stay held);
# after promotion the queue is processed and due holds expire.
use strict;
use warnings FATAL => 'all';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use PacelcTest;

my $primary = pacelc_node('qprimary', allows_streaming => 1, conf => qq{
pacelc.launcher_naptime = 1s
pacelc.worker_naptime = 1s
});
$primary->safe_psql('postgres',
	'CREATE EXTENSION pacelc;' . shop_role_sql() . recording_queue_sql('q'));
my $standby = pacelc_standby($primary, 'qstandby', backup => 'b');

# the primary stops serving (as if it had died before handling anything)
$primary->append_conf('postgresql.conf', "pacelc.databases = 'none_here'");
$primary->reload;
$primary->safe_psql('postgres', q{
	SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'pacelc worker'});
$primary->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pacelc worker'})
  or die 'the worker does not leave';
$primary->safe_psql('postgres', q{
	SELECT pacelc.enqueue('q', jsonb_build_object('i', i)) FROM generate_series(1, 10) i;
	SELECT pacelc.set_stock('s', 5);
	SELECT pacelc.reserve('s', 2, ttl => '1 s');
});
$primary->wait_for_catchup($standby);
# nothing may happen on the standby: give it the time to do it wrong
sleep 2;
is($standby->safe_psql('postgres', q{SELECT count(*) FROM seen}), '0',
	'nothing handled while everything is only on the standby');
is($standby->safe_psql('postgres',
	q{SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'pacelc%'}),
	'0', 'no pacelc worker runs on the standby');
is($standby->safe_psql('postgres', q{SELECT state FROM pacelc.reservations}), 'held',
	'the standby does not expire holds');

$primary->stop('immediate');
$standby->promote;
ok($standby->poll_query_until('postgres', q{SELECT count(*) = 10 FROM seen}),
	'after promotion the queue is processed');
ok($standby->poll_query_until('postgres', q{SELECT state = 'expired' FROM pacelc.reservations}),
	'and due holds expire');
# the worker puts the units back into the counter after its commit is
# visible: wait until it is idle again
wait_for_quiet($standby) or die 'the worker does not settle';
is($standby->safe_psql('postgres', q{SELECT pacelc.available('s')}), '5', 'units back');

$standby->stop;
done_testing();
