# kill -9 of the whole server while the worker is in the middle of a batch:
# after the restart every committed message is still there, each one ends
# done or dead, and no handler effect was applied twice.
use strict;
use warnings FATAL => 'all';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use PacelcTest;
use Time::HiRes qw(usleep);

my $n = 600;
my $node = pacelc_node('qcrash', conf => qq{
pacelc.launcher_naptime = 1s
pacelc.worker_naptime = 1s
pacelc.worker_batch = 50
log_statement = none
});
$node->safe_psql('postgres', 'CREATE EXTENSION pacelc;' . shop_role_sql() . q{
	CREATE TABLE effects (n int);
	GRANT INSERT ON effects TO regress_pacelc_shop;
	CREATE FUNCTION slow(p jsonb) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO effects VALUES ((p->>'n')::int);
		PERFORM pg_sleep(0.004);
		IF random() < 0.2 THEN RAISE EXCEPTION 'flaky'; END IF;
	END $$;
	SET ROLE regress_pacelc_shop;
	SELECT pacelc.create_queue('work', 'slow(jsonb)', max_attempts => 20, backoff => '1 ms');
});
$node->safe_psql('postgres',
	"SELECT pacelc.enqueue('work', jsonb_build_object('n', i)) FROM generate_series(1, $n) i");

# let it work a little, then kill everything
$node->poll_query_until('postgres', q{SELECT count(*) > 50 FROM effects}) or die;
usleep(300_000);
my $before = $node->safe_psql('postgres', q{SELECT count(*) FROM pacelc.messages WHERE state = 'done'});
ok($before < $n, "crash in the middle: $before of $n done");
my $pm = $node->{_pid};
my @children = grep { /^\d+$/ } split /\s+/, `pgrep -P $pm`;
kill 'KILL', $pm, @children;
for (1 .. 100) { last unless kill 0, $pm; usleep(100_000); }
$node->{_pid} = undef;
$node->start;

is($node->safe_psql('postgres', q{SELECT count(*) FROM pacelc.messages WHERE queue = 'work'}),
	$n, 'no committed message lost');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM pacelc.messages WHERE queue = 'work' AND state = 'ready'}),
	'all handled after restart');
my ($done, $dead) = message_outcome($node, 'work');
is($done + $dead, $n, "done $done + dead $dead = $n");
my ($effects, $distinct) = split /\|/, $node->safe_psql('postgres',
	q{SELECT count(*), count(DISTINCT n) FROM effects});
is($effects, $distinct, "no effect applied twice across the crash ($effects effects)");
is($effects, $done, 'exactly one effect per done message');
note "after kill -9: $done done, $dead dead, $effects effects";

$node->stop;
done_testing();
