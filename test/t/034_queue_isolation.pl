# One owner's handler or message cannot stall the others (issue 12), each
# scenario the way it used to fail first:
#  - a handler that catches the cancellation and sleeps: cancelled again,
#    then given up on (the worker restarts); its message dead, never done;
#  - a handler that catches the cancellation once and returns late: failed;
#  - a message at attempt 1,025 (power(2, 1024) overflowed) and nack() of one;
#  - failure bookkeeping that itself fails: that message dead-lettered with
#    the reason, the batch goes on;
#  - a backlog with a slow handler on one worker: 1 s holds still expire on
#    time; SIGHUP is read inside the long round;
#  - session state a handler leaves (advisory locks) is reset;
#  - a dropped handler and a dropped owner role fail the attempt cleanly.
use strict;
use warnings FATAL => 'all';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use PacelcTest;
use Time::HiRes qw(time usleep);

my $node = pacelc_node('isolation', conf => qq{
pacelc.launcher_naptime = 1s
pacelc.worker_naptime = 1s
pacelc.handler_timeout = 500ms
pacelc.workers_per_database = 2
log_statement = none
});

$node->safe_psql('postgres', 'CREATE EXTENSION pacelc;' . shop_role_sql(login => 0) . q{
	CREATE TABLE effects (q text, at timestamptz DEFAULT clock_timestamp());
	GRANT INSERT ON effects TO regress_pacelc_shop;
	CREATE FUNCTION fast(p jsonb) RETURNS void LANGUAGE sql
		AS $$ INSERT INTO effects (q) VALUES ('fast') $$;
	-- swallows every cancellation and keeps sleeping
	CREATE FUNCTION stubborn(p jsonb) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO effects (q) VALUES ('stubborn');
		LOOP
			BEGIN
				PERFORM pg_sleep(3600);
			EXCEPTION WHEN query_canceled THEN
				NULL;
			END;
		END LOOP;
	END $$;
	-- swallows one cancellation, then returns late
	CREATE FUNCTION late(p jsonb) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO effects (q) VALUES ('late');
		BEGIN
			PERFORM pg_sleep(3600);
		EXCEPTION WHEN query_canceled THEN
			NULL;
		END;
	END $$;
	CREATE FUNCTION poison(p jsonb) RETURNS void LANGUAGE plpgsql
		AS $$ BEGIN RAISE EXCEPTION 'poison %', p->>'n'; END $$;
	CREATE FUNCTION locker(p jsonb) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM pg_advisory_lock(4242);
		IF p->>'fail' = 'yes' THEN
			RAISE EXCEPTION 'failing with an advisory lock held';
		END IF;
	END $$;
	SET ROLE regress_pacelc_shop;
	SELECT pacelc.create_queue('fast', 'fast(jsonb)');
	SELECT pacelc.create_queue('stuck', 'stubborn(jsonb)', max_attempts => 1);
	SELECT pacelc.create_queue('late', 'late(jsonb)', max_attempts => 1);
	SELECT pacelc.create_queue('poison', 'poison(jsonb)', max_attempts => 5000, backoff => '1 ms');
	SELECT pacelc.create_queue('locks', 'locker(jsonb)', max_attempts => 1);
	SELECT pacelc.create_queue('ext', max_attempts => 5000, backoff => '1 ms');
});

# --- 1. a handler that catches the cancellation and sleeps -------------
my $t0 = time;
$node->safe_psql('postgres', q{
	SET ROLE regress_pacelc_shop;
	SELECT pacelc.enqueue('stuck', '{}');
	SELECT pacelc.enqueue('late', '{}');
});
# while it is stuck, the other queues are served (by the pool's other worker)
usleep(300_000);
$node->safe_psql('postgres', q{SET ROLE regress_pacelc_shop; SELECT pacelc.enqueue('fast', '{}')});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM effects WHERE q = 'fast'}),
	'another queue is served while a handler ignores its cancellation');
ok($node->poll_query_until('postgres',
		q{SELECT state FROM pacelc.messages WHERE queue = 'stuck'}, 'dead'),
	'the stubborn handler\'s message ends dead, not done');
my $took = time - $t0;
like($node->safe_psql('postgres', q{SELECT last_error FROM pacelc.messages WHERE queue = 'stuck'}),
	qr/did not finish/, 'its error says the attempt did not finish');
# the exiting worker writes this line after its transaction has ended, so
# another worker may have marked the message dead before: wait for it
ok($node->wait_for_log(qr/gave up on the handler of queue "stuck"/),
	'the worker logged that it gave up on the handler');
note sprintf('stubborn handler: dead after %.1f s (handler_timeout 500 ms)', $took);
ok($node->poll_query_until('postgres',
		q{SELECT state || ':' || last_sqlstate FROM pacelc.messages WHERE queue = 'late'}, 'dead:57014'),
	'a handler that swallows the cancellation and returns late fails its attempt');
like($node->safe_psql('postgres', q{SELECT last_error FROM pacelc.messages WHERE queue = 'late'}),
	qr/ran past "pacelc.handler_timeout"/, 'with a clear error');
is($node->safe_psql('postgres', q{SELECT count(*) FROM effects WHERE q IN ('stubborn', 'late')}),
	'0', 'their effects were rolled back');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'pacelc worker' AND datname = 'postgres'}),
	'the pool is complete again after the worker gave up');

# --- 2. a message at attempt 1,025 ------------------------------------
$node->safe_psql('postgres', q{
	SET ROLE regress_pacelc_shop;
	SELECT pacelc.enqueue('poison', '{"n": 1025}', delay => '1 hour');
	RESET ROLE;
	UPDATE pacelc.messages SET attempts = 1024, run_at = now() WHERE queue = 'poison';
});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pacelc.message_errors e JOIN pacelc.messages m ON m.id = e.message_id
	 WHERE m.queue = 'poison' AND e.attempt = 1025}), 'attempt 1,025 recorded');
is($node->safe_psql('postgres', q{
	SELECT state || ':' || attempts || ':' || (run_at > now() + interval '5 min' AND run_at < now() + interval '30 min')
	  FROM pacelc.messages WHERE queue = 'poison'}),
	'ready:1025:true', 'retried later, with the backoff capped (1 ms x 2^20, +-50%)');
$node->safe_psql('postgres', q{SET ROLE regress_pacelc_shop; SELECT pacelc.enqueue('fast', '{}')});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 2 FROM effects WHERE q = 'fast'}),
	'the other queues go on');
# nack() of an external consumer's message at attempt 1,025
my ($rc, $out, $err) = $node->psql('postgres', q{
	SET ROLE regress_pacelc_shop;
	SELECT pacelc.enqueue('ext', '{}');
	RESET ROLE;
	UPDATE pacelc.messages SET attempts = 1024 WHERE queue = 'ext';
	SET ROLE regress_pacelc_shop;
	SELECT pacelc.nack(id, 'consumer failed') FROM pacelc.dequeue('ext');
});
is($rc, 0, "nack() at attempt 1,025 works ($err)");

# --- 3. bookkeeping that fails dead-letters that message only ---------
$node->safe_psql('postgres', q{
	CREATE FUNCTION pacelc_test_boom() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF NEW.error LIKE 'poison bookkeeping%' THEN
			RAISE EXCEPTION 'message_errors is broken';
		END IF;
		RETURN NEW;
	END $$;
	CREATE TRIGGER boom BEFORE INSERT ON pacelc.message_errors
		FOR EACH ROW EXECUTE FUNCTION pacelc_test_boom();
	SET ROLE regress_pacelc_shop;
	SELECT pacelc.enqueue('poison', '{"n": "bookkeeping"}');
	SELECT pacelc.enqueue('fast', '{}');
});
ok($node->poll_query_until('postgres', q{
	SELECT state FROM pacelc.messages WHERE queue = 'poison' AND payload->>'n' = 'bookkeeping'}, 'dead'),
	'a message whose failure cannot be recorded is dead-lettered');
like($node->safe_psql('postgres', q{
	SELECT last_error FROM pacelc.messages WHERE queue = 'poison' AND payload->>'n' = 'bookkeeping'}),
	qr/recording this failure failed.*message_errors is broken/, 'with the reason');
ok($node->poll_query_until('postgres', q{SELECT count(*) = 3 FROM effects WHERE q = 'fast'}),
	'and the other messages are handled');
$node->safe_psql('postgres', q{DROP TRIGGER boom ON pacelc.message_errors});

# --- 4. an advisory lock left by a handler -----------------------------
$node->safe_psql('postgres', q{
	SET ROLE regress_pacelc_shop;
	SELECT pacelc.enqueue('locks', '{"fail": "yes"}');
	SELECT pacelc.enqueue('locks', '{"fail": "no"}');
});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM pacelc.messages WHERE queue = 'locks' AND state = 'ready'}),
	'both lock-taking messages handled');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
	 WHERE l.locktype = 'advisory' AND a.backend_type = 'pacelc worker'}),
	'0', 'no advisory lock left held by a worker (failed or returned)');
is($node->safe_psql('postgres', q{SELECT pg_try_advisory_lock(4242)}), 't',
	'another session can take the lock');

# --- 5. a dropped handler, a dropped owner ------------------------------
$node->safe_psql('postgres', q{
	CREATE ROLE regress_pacelc_gone;
	GRANT USAGE ON SCHEMA pacelc TO regress_pacelc_gone;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pacelc TO regress_pacelc_gone;
	GRANT INSERT ON effects TO regress_pacelc_gone;
	CREATE FUNCTION doomed(p jsonb) RETURNS void LANGUAGE sql AS $$ INSERT INTO effects (q) VALUES ('doomed') $$;
	SET ROLE regress_pacelc_gone;
	SELECT pacelc.create_queue('orphan', 'fast(jsonb)', max_attempts => 1);
	RESET ROLE;
	SET ROLE regress_pacelc_shop;
	SELECT pacelc.create_queue('nohandler', 'doomed(jsonb)', max_attempts => 1);
	RESET ROLE;
});
# DROP ROLE is refused in a database where the role owns a queue; from
# another database it is not seen, and the worker must cope
$node->safe_psql('postgres', q{
	REVOKE ALL ON effects FROM regress_pacelc_gone;
	REVOKE ALL ON SCHEMA pacelc FROM regress_pacelc_gone;
	REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pacelc FROM regress_pacelc_gone;
});
$node->safe_psql('template1', q{DROP ROLE regress_pacelc_gone});
$node->safe_psql('postgres', q{
	DROP FUNCTION doomed(jsonb);
	SELECT pacelc.enqueue('orphan', '{}');
	SELECT pacelc.enqueue('nohandler', '{}');
});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 2 FROM pacelc.messages WHERE queue IN ('orphan', 'nohandler') AND state = 'dead'}),
	'attempts with a dropped owner or handler fail');
is($node->safe_psql('postgres', q{SELECT last_sqlstate FROM pacelc.messages WHERE queue = 'orphan'}),
	'42501', 'a dropped owner: 42501, nothing runs under its stale OID');
is($node->safe_psql('postgres', q{SELECT last_sqlstate FROM pacelc.messages WHERE queue = 'nohandler'}),
	'42883', 'a dropped handler: 42883');
is($node->safe_psql('postgres', q{SELECT count(*) FROM effects WHERE q = 'doomed'}), '0', 'nothing ran');

# --- 6. a backlog with a slow handler on ONE worker; 1 s holds ------------
$node->append_conf('postgresql.conf', 'pacelc.workers_per_database = 1');
$node->reload;
$node->safe_psql('postgres', q{
	CREATE FUNCTION slow(p jsonb) RETURNS void LANGUAGE sql AS $$ SELECT pg_sleep(0.005) $$;
	SET ROLE regress_pacelc_shop;
	SELECT pacelc.create_queue('slow', 'slow(jsonb)');
	SELECT count(pacelc.enqueue('slow', jsonb_build_object('i', i))) FROM generate_series(1, 100000) i;
	RESET ROLE;
	SELECT pacelc.set_stock('ttl-sku', 1000);
});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pacelc worker' AND datname = 'postgres'}),
	'one worker left in the pool');
for my $i (1 .. 8)
{
	$node->safe_psql('postgres', q{SELECT pacelc.reserve('ttl-sku', 1, ttl => '1 s')});
	usleep(400_000);
}
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM pacelc.reservation_data WHERE sku = 'ttl-sku' AND state = 'held'}),
	'every hold expired');
my ($late_max, $backlog) = split /\|/, $node->safe_psql('postgres', q{
	SELECT round(extract(epoch FROM max(ended_at - expires_at)) * 1000),
	       (SELECT count(*) FROM pacelc.messages WHERE queue = 'slow' AND state = 'ready')
	  FROM pacelc.reservation_data WHERE sku = 'ttl-sku'});
ok($backlog > 50000, "the backlog was still there ($backlog messages)");
cmp_ok($late_max, '<', 1000, "1 s holds expired at most $late_max ms late under the backlog");
note "hold expiry under a 100,000-message backlog with a 5 ms handler, one worker: at most $late_max ms late";

# SIGHUP inside the long round: a bigger pool starts while the backlog lasts
$node->append_conf('postgresql.conf', 'pacelc.workers_per_database = 2');
$node->reload;
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'pacelc worker' AND datname = 'postgres'}),
	'SIGHUP read inside a long round: the pool grows');
# SIGTERM inside the long round
my $busy = $node->safe_psql('postgres', q{
	SELECT min(pid) FROM pg_stat_activity WHERE backend_type = 'pacelc worker' AND datname = 'postgres'});
$t0 = time;
$node->safe_psql('postgres', "SELECT pg_terminate_backend($busy)");
ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $busy"),
	'SIGTERM ends a worker inside a long round');
my $stop_ms = int((time - $t0) * 1000);
cmp_ok($stop_ms, '<', 3000, "within $stop_ms ms");
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pacelc.messages WHERE queue = 'slow' AND state = 'ready' AND attempts > 1}),
	'0', 'no message of the backlog counted twice');

$node->stop;
done_testing();
