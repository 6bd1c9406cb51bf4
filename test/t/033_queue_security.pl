# The worker runs handlers as their queue's owner and nothing more: settings
# a handler changes die with its call (it cannot redirect the worker's own
# statements through search_path), a handler calling alter_queue() or
# drop_queue() is judged as its owner (not as the worker's superuser), and
# pacelc.databases is obeyed on SIGHUP in both directions.
use strict;
use warnings FATAL => 'all';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use PacelcTest;

my $node = pacelc_node('qsec', conf => qq{
pacelc.launcher_naptime = 600s
pacelc.worker_naptime = 1s
log_statement = none
});

$node->safe_psql('postgres', q{
	CREATE EXTENSION pacelc;
	CREATE ROLE regress_pacelc_tenant_a LOGIN;
	CREATE ROLE regress_pacelc_tenant_b LOGIN;
	GRANT USAGE ON SCHEMA pacelc TO regress_pacelc_tenant_a, regress_pacelc_tenant_b;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pacelc TO regress_pacelc_tenant_a, regress_pacelc_tenant_b;
	CREATE TABLE log (who text, what text, search_path text, at timestamptz DEFAULT clock_timestamp());
	GRANT INSERT ON log TO regress_pacelc_tenant_a, regress_pacelc_tenant_b;
	CREATE SCHEMA evil AUTHORIZATION regress_pacelc_tenant_a;

	-- regress_pacelc_tenant_a's handler: changes session settings and tries to take over
	-- regress_pacelc_tenant_b's queue
	CREATE FUNCTION handler_a(p jsonb) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM set_config('search_path', 'evil, pg_catalog', false);
		PERFORM set_config('application_name', 'hijacked', false);
		BEGIN
			PERFORM pacelc.alter_queue('queue_b', max_attempts => 1);
			INSERT INTO public.log VALUES (current_user, 'alter ok', current_setting('search_path'));
		EXCEPTION WHEN OTHERS THEN
			INSERT INTO public.log VALUES (current_user, SQLSTATE, current_setting('search_path'));
		END;
	END $$;
	ALTER FUNCTION handler_a(jsonb) OWNER TO regress_pacelc_tenant_a;
	CREATE FUNCTION handler_b(p jsonb) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.log VALUES (current_user, 'b ran', current_setting('search_path'));
	END $$;
	ALTER FUNCTION handler_b(jsonb) OWNER TO regress_pacelc_tenant_b;
	SET ROLE regress_pacelc_tenant_a;
	SELECT pacelc.create_queue('queue_a', 'handler_a(jsonb)');
	SET ROLE regress_pacelc_tenant_b;
	SELECT pacelc.create_queue('queue_b', 'handler_b(jsonb)', max_attempts => 7);
	RESET ROLE;
});

# a function in evil that would shadow pg_catalog's if the worker used it
$node->safe_psql('postgres', q{
	SET ROLE regress_pacelc_tenant_a;
	CREATE FUNCTION evil.clock_timestamp() RETURNS timestamptz LANGUAGE sql
		AS $$ SELECT 'infinity'::timestamptz $$;
	RESET ROLE;
});

$node->safe_psql('postgres', q{SELECT pacelc.enqueue('queue_a', '{}')});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM log WHERE who = 'regress_pacelc_tenant_a'}),
	'handler_a ran');
is($node->safe_psql('postgres', q{SELECT what FROM log WHERE who = 'regress_pacelc_tenant_a'}),
	'42501', 'a handler may not alter another owner\'s queue');
is($node->safe_psql('postgres', q{SELECT max_attempts FROM pacelc.queues WHERE name = 'queue_b'}),
	'7', 'queue_b unchanged');

# the next messages: handled normally, with the worker's own search_path
$node->safe_psql('postgres', q{SELECT pacelc.enqueue('queue_b', '{}'), pacelc.enqueue('queue_b', '{}')});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 2 FROM log WHERE who = 'regress_pacelc_tenant_b'}),
	'later messages are still handled');
is($node->safe_psql('postgres', q{SELECT DISTINCT search_path FROM log WHERE who = 'regress_pacelc_tenant_b'}),
	'"$user", public', 'a handler\'s settings do not outlive its call');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_stat_activity WHERE application_name = 'hijacked'}),
	'0', 'not even non-local ones');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pacelc.messages WHERE state <> 'done'}), '0', 'all messages done');

# pacelc.databases: a database taken off the list loses its worker on SIGHUP,
# and gets it back on the next SIGHUP (the launcher naps 600 s here)
sub worker_count
{
	return $node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pacelc worker'});
}
ok(worker_count() >= 1, 'the database has its workers');
$node->append_conf('postgresql.conf', "pacelc.databases = 'elsewhere'");
$node->reload;
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pacelc worker'}),
	'worker leaves when its database is no longer listed');
$node->safe_psql('postgres', q{SELECT pacelc.enqueue('queue_b', '{}')});
$node->append_conf('postgresql.conf', "pacelc.databases = 'elsewhere, postgres'");
$node->reload;
ok($node->poll_query_until('postgres', q{SELECT count(*) = 3 FROM log WHERE who = 'regress_pacelc_tenant_b'}),
	'listed again: a worker is back at once and handles the waiting message');

$node->stop;
done_testing();
