# A batch after a crash restart: the message whose attempt the crash cut
# off (counted, now an ended lease) goes the lease way alone, so that a
# crash in a fresh message's handler taken next is counted as soon as the
# server is back, not when a lease would run out (two handler_timeouts).
# (Written by helper htest as a reproducer: 60 s before the fix.)
use strict;
use warnings FATAL => 'all';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use PacelcTest;
use Time::HiRes qw(time usleep);

my $node = pacelc_node('mixed', conf => qq{
pacelc.launcher_naptime = 1s
pacelc.worker_naptime = 1s
pacelc.handler_timeout = 30s
pacelc.workers_per_database = 1
restart_after_crash = on
log_statement = none
});
$node->safe_psql('postgres', 'CREATE EXTENSION pacelc;' . shop_role_sql(login => 0) . q{
	CREATE FUNCTION sleeper(p jsonb) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		RAISE LOG 'mixed: handler of % starts', p->>'q';
		PERFORM pg_sleep(30);
	END $$;
	SET ROLE regress_pacelc_shop;
	SELECT pacelc.create_queue('pair', 'sleeper(jsonb)', max_attempts => 5, backoff => '1 ms');
});
my $sleeping = q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'pacelc worker' AND wait_event = 'PgSleep'};
my ($a) = $node->safe_psql('postgres', q{SET ROLE regress_pacelc_shop; SELECT pacelc.enqueue('pair', '{"q": "A"}')});
defined((wait_for_value($node, $sleeping, undef, 20))[0]) or die;
my ($c) = $node->safe_psql('postgres', q{SET ROLE regress_pacelc_shop; SELECT pacelc.enqueue('pair', '{"q": "C"}', delay => '1 s')});
usleep(1_500_000);
my $pid = $node->safe_psql('postgres', $sleeping);
my $off = -s $node->logfile;
kill 'KILL', $pid;
# C runs next, in the batch after the one that records A's crash
ok(defined((wait_for_value($node, qq{SELECT 1 FROM ($sleeping) s}, undef, 20))[0]), 'C runs after the restart');
note $node->safe_psql('postgres', q{SELECT string_agg(payload->>'q' || ' ' || state || ' att ' || attempts || ' lease ' || coalesce(leased_until::text, '-'), '; ' ORDER BY id) FROM pacelc.messages});
$pid = $node->safe_psql('postgres', $sleeping);
my $t = time;
kill 'KILL', $pid;
my ($w) = wait_for_value($node, qq{SELECT count(*) FROM pacelc.message_errors WHERE message_id = $c}, '1', 75);
note sprintf('C crashed; its attempt recorded %s s after the kill', defined $w ? sprintf('%.1f', time - $t) : 'not within 75');
ok(defined $w && time - $t < 20, 'C\'s crash counted within 20 s');
$node->stop('immediate');
done_testing();
