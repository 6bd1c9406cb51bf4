# The in-flight file (0.6) attacked as a tenant would, each scenario failing
# first:
#  1. a message behind a stubborn handler in the same batch was never
#     attempted when the worker gave up: its attempt must not be counted
#     (max_attempts 1: it must end done, its handler run once, not dead
#     "did not finish" without its handler ever having started);
#  2. a tenant's open transactions that hold the row locks of messages
#     listed in the files of workers that gave up (one per worker of the
#     pool) must not stall the other queues of the database: a worker whose
#     counting meets a row lock held by a client goes on with its batches;
#  3. a database with default_transaction_isolation = serializable: the
#     workers' own statements must not fail each other's batches (with
#     max_attempts 1: messages whose handlers succeeded must not end dead).
use strict;
use warnings FATAL => 'all';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use PacelcTest;
use Time::HiRes qw(time usleep);

my $node = pacelc_node('inflight_attack', conf => qq{
pacelc.launcher_naptime = 1s
pacelc.worker_naptime = 1s
pacelc.handler_timeout = 500ms
pacelc.workers_per_database = 2
log_statement = none
});
$node->safe_psql('postgres', 'CREATE EXTENSION pacelc;' . shop_role_sql() . q{
	CREATE TABLE effects (q text);
	GRANT INSERT ON effects TO regress_pacelc_shop;
	-- {"stubborn": true}: swallows every cancellation (the worker gives up);
	-- otherwise records p->>'q'
	CREATE FUNCTION h(p jsonb) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO effects VALUES (p->>'q');
		IF (p->>'stubborn')::bool THEN
			LOOP
				BEGIN
					PERFORM pg_sleep(3600);
				EXCEPTION WHEN query_canceled THEN
					NULL;
				END;
			END LOOP;
		END IF;
	END $$;
	SET ROLE regress_pacelc_shop;
	SELECT pacelc.create_queue('mixed', 'h(jsonb)', max_attempts => 1);
	SELECT pacelc.create_queue('stuck1', 'h(jsonb)', max_attempts => 1);
	SELECT pacelc.create_queue('stuck2', 'h(jsonb)', max_attempts => 1);
	SELECT pacelc.create_queue('other', 'h(jsonb)');
});

my $sleeping_worker = q{
	SELECT pid FROM pg_stat_activity
	 WHERE backend_type = 'pacelc worker' AND datname = 'postgres' AND wait_event = 'PgSleep'};

# --- 1. the messages a give-up left unreached ---------------------------
# one transaction: one batch, the stubborn message first (lowest id)
$node->safe_psql('postgres', q{
	SET ROLE regress_pacelc_shop;
	BEGIN;
	SELECT pacelc.enqueue('mixed', '{"q": "poison", "stubborn": true}');
	SELECT pacelc.enqueue('mixed', jsonb_build_object('q', 'innocent' || i)) FROM generate_series(1, 3) i;
	COMMIT;
});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM pacelc.messages WHERE queue = 'mixed' AND state = 'ready'}),
	'the batch behind the stubborn handler is settled');
is($node->safe_psql('postgres', q{
	SELECT state FROM pacelc.messages WHERE queue = 'mixed' AND payload->>'q' = 'poison'}),
	'dead', 'the stubborn message is dead (its attempt never finished)');
is($node->safe_psql('postgres', q{
	SELECT string_agg(payload->>'q' || ':' || state || ':' || attempts, ',' ORDER BY id)
	  FROM pacelc.messages WHERE queue = 'mixed' AND payload->>'q' <> 'poison'}),
	'innocent1:done:1,innocent2:done:1,innocent3:done:1',
	'the messages the worker never reached are done, one attempt each (none counted for the give-up)');
is($node->safe_psql('postgres', q{SELECT count(*) FROM effects WHERE q LIKE 'innocent%'}),
	'3', 'their handlers ran (and committed) once each');

# --- 2. clients' row locks on messages of files being counted ---------------
# two stubborn messages in two queues: each worker of the pool of two takes
# one and gives up on it
my @x = map {
	$node->safe_psql('postgres', qq{
		SET ROLE regress_pacelc_shop;
		SELECT pacelc.enqueue('$_', '{"q": "$_", "stubborn": true}')})
} qw(stuck1 stuck2);
ok($node->poll_query_until('postgres', "SELECT count(*) = 2 FROM ($sleeping_worker) s"),
	'both workers run a stubborn handler');
# the tenant acks its messages in transactions it keeps open: each ack waits
# for the batch's row lock, which the worker's give-up releases
my @bg;
for my $id (@x)
{
	my $bg = $node->background_psql('postgres', on_error_stop => 0);
	$bg->query_until(qr/acking/, qq{
		SET ROLE regress_pacelc_shop;
		\\echo acking
		BEGIN;
		SELECT pacelc.ack($id);
	});
	push @bg, $bg;
}
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 2 FROM pg_stat_activity
	 WHERE query LIKE '%pacelc.ack%' AND state = 'idle in transaction'}),
	'the give-ups released the messages and the acks hold them in open transactions');
my $t0 = time;
$node->safe_psql('postgres', q{
	SET ROLE regress_pacelc_shop;
	SELECT pacelc.enqueue('other', '{"q": "other"}')});
my $served = 0;
while (time - $t0 < 10)
{
	$served = $node->safe_psql('postgres', q{SELECT count(*) FROM effects WHERE q = 'other'});
	last if $served;
	usleep(100_000);
}
is($served, '1', sprintf('another queue is served while the acks stay open (waited %.1f s)', time - $t0));
for my $bg (@bg)
{
	$bg->query_safe('COMMIT');
	$bg->quit;
}
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM effects WHERE q = 'other'}),
	'the other queue is served once the acks commit');
is($node->safe_psql('postgres', q{
	SELECT string_agg(state || ':' || attempts, ',' ORDER BY id) FROM pacelc.messages
	 WHERE queue IN ('stuck1', 'stuck2')}), 'done:0,done:0', 'the acked messages are done');

# --- 3. a database whose default isolation is serializable -----------------
# The worker's own statements (lock, done, counting) in a SERIALIZABLE batch
# conflict with each other's (two workers on one queue): a batch that fails
# to commit counts every started attempt as failed, and with max_attempts 1
# messages whose handlers succeeded end dead.
$node->safe_psql('postgres', q{
	ALTER DATABASE postgres SET default_transaction_isolation = 'serializable';
	CREATE FUNCTION quick(p jsonb) RETURNS void LANGUAGE plpgsql
		AS $$ BEGIN INSERT INTO effects VALUES (p->>'q'); END $$;
	SET ROLE regress_pacelc_shop;
	SELECT pacelc.create_queue('ser', 'quick(jsonb)', max_attempts => 1, concurrency => 2);
});
# the workers read the database's settings when they connect
$node->safe_psql('postgres', q{
	SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'pacelc worker'});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 2 FROM pg_stat_activity
	 WHERE backend_type = 'pacelc worker' AND datname = 'postgres'}),
	'the pool is back, serializable by default');
$node->safe_psql('postgres', q{
	SET ROLE regress_pacelc_shop;
	SELECT count(pacelc.enqueue('ser', jsonb_build_object('q', 'ser'))) FROM generate_series(1, 3000)});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM pacelc.messages WHERE queue = 'ser' AND state = 'ready'}),
	'the serializable queue is drained');
is($node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE state = 'done') || ' done, '
	       || count(*) FILTER (WHERE state = 'dead') || ' dead'
	  FROM pacelc.messages WHERE queue = 'ser'}),
	'3000 done, 0 dead', 'no message dies of the worker\'s own serialization failures');
is($node->safe_psql('postgres', q{SELECT count(*) FROM effects WHERE q = 'ser'}),
	'3000', 'one effect per message');

$node->stop;
done_testing();
