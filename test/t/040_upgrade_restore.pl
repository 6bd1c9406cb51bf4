# A cluster with pacelc survives what long-lived clusters go through:
# pg_dump/pg_restore (custom and plain format) of a database with stock,
# holds, queues with pending, leased and dead messages, grants and an
# altered built-in queue "expired"; and pg_upgrade (--copy, then --link) of
# the whole cluster: verify() clean, counters equal to the tables, handlers
# still run, pending messages are handled once.
use strict;
use warnings FATAL => 'all';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $conf = qq{
shared_preload_libraries = 'pacelc'
pacelc.worker_naptime = 1s
pacelc.launcher_naptime = 2s
# restores are compared as loaded: no worker in the restored databases
pacelc.databases = 'postgres'
};

my $old = PostgreSQL::Test::Cluster->new('old');
$old->init;
$old->append_conf('postgresql.conf', $conf);
$old->start;

$old->safe_psql('postgres', q{
	CREATE EXTENSION pacelc;
	CREATE ROLE regress_pacelc_shop LOGIN IN ROLE pacelc_app;
	CREATE ROLE regress_pacelc_ops LOGIN IN ROLE pacelc_app;
	CREATE SCHEMA shop AUTHORIZATION regress_pacelc_shop;
	CREATE TABLE shop.effects (msg jsonb);
	ALTER TABLE shop.effects OWNER TO regress_pacelc_shop;
	CREATE FUNCTION shop.handle(p jsonb) RETURNS void LANGUAGE plpgsql
		AS $$ BEGIN INSERT INTO shop.effects VALUES (p); END $$;
	ALTER FUNCTION shop.handle(jsonb) OWNER TO regress_pacelc_shop;
	CREATE FUNCTION shop.fail(p jsonb) RETURNS void LANGUAGE plpgsql
		AS $$ BEGIN RAISE EXCEPTION 'no'; END $$;
	ALTER FUNCTION shop.fail(jsonb) OWNER TO regress_pacelc_shop;

	SELECT pacelc.set_stock('tee', 100), pacelc.set_stock('cap', 5);
	SET ROLE regress_pacelc_shop;
	SELECT pacelc.reserve('tee', 3, ttl => '1 day');
	SELECT pacelc.confirm(pacelc.reserve('tee', 2));
	SELECT pacelc.reserve('cap', 5, idempotency_key => 'order-1');
	SELECT pacelc.create_queue('orders', 'shop.handle(jsonb)', max_attempts => 4, backoff => '2 s');
	SELECT pacelc.create_queue('broken', 'shop.fail(jsonb)', max_attempts => 1);
	SELECT pacelc.create_queue('outbox');
	SELECT pacelc.grant_queue('outbox', 'consume', 'regress_pacelc_ops');
	-- pending (not yet due), leased and dead messages
	SELECT pacelc.enqueue('orders', jsonb_build_object('n', g), delay => '1 hour')
	  FROM generate_series(1, 5) g;
	SELECT pacelc.enqueue('outbox', '{"mail": 1}'), pacelc.enqueue('outbox', '{"mail": 2}');
	SELECT pacelc.enqueue('broken', '{"x": 1}');
	RESET ROLE;
	-- the README's customisation of the built-in queue
	SELECT pacelc.alter_queue('expired', max_attempts => 3, backoff => '5 s',
							  new_owner => 'regress_pacelc_ops');
});
$old->safe_psql('postgres',
	q{SET ROLE regress_pacelc_ops; SELECT count(*) FROM pacelc.dequeue('outbox', 1, '1 hour')});
$old->poll_query_until('postgres',
	q{SELECT state = 'dead' FROM pacelc.messages WHERE queue = 'broken'})
  or die 'the failing message did not die';

# What must survive, as text to compare.
my $snapshot = q{
	SELECT string_agg(x, E'\n' ORDER BY x) FROM (
		SELECT format('queue %s %s %s %s %s', name, handler, owner, max_attempts, backoff) AS x
		  FROM pacelc.queues
		UNION ALL
		SELECT format('msg %s %s %s %s %s %s', id, queue, payload, state, attempts,
					  leased_until IS NOT NULL) FROM pacelc.messages
		UNION ALL
		SELECT format('grant %s %s %s %s', queue, grantee, produce, consume) FROM pacelc.queue_grants
		UNION ALL
		SELECT format('hold %s %s %s %s %s %s', id, sku, qty, state, owner, idempotency_key)
		  FROM pacelc.reservation_data
		UNION ALL
		SELECT format('stock %s %s %s %s', sku, on_hand, held, available) FROM pacelc.stock
		UNION ALL
		SELECT format('available %s %s', sku, pacelc.available(sku)) FROM pacelc.skus
		UNION ALL
		SELECT format('problem %s %s', problem, sku) FROM pacelc.verify()) s};
my $before = $old->safe_psql('postgres', $snapshot);
like($before, qr/queue expired  regress_pacelc_ops 3 00:00:05/, 'expired queue altered');

# ---- pg_dump / pg_restore, custom and plain ----
my $dir = $old->basedir;
$old->command_ok([ 'pg_dump', '-Fc', '-f', "$dir/db.dump", '-d', $old->connstr('postgres') ],
	'pg_dump custom');
$old->command_ok([ 'pg_dump', '-Fp', '-f', "$dir/db.sql", '-d', $old->connstr('postgres') ],
	'pg_dump plain');
$old->safe_psql('postgres', 'CREATE DATABASE r_custom; CREATE DATABASE r_plain');
$old->command_ok([ 'pg_restore', '-d', $old->connstr('r_custom'), "$dir/db.dump" ],
	'pg_restore custom');
$old->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $old->connstr('r_plain'),
		'-f', "$dir/db.sql" ], 'psql plain restore');
for my $db ('r_custom', 'r_plain')
{
	is($old->safe_psql($db, $snapshot), $before, "$db: everything restored, settings included");
}
$old->safe_psql('postgres', 'DROP DATABASE r_custom; DROP DATABASE r_plain');

# ---- pg_upgrade, --copy then --link ----
$old->stop;
my $bindir = $old->config_data('--bindir');
# copying is pg_upgrade's default (the --copy switch only exists since 16)
for my $mode ('--copy', '--link')
{
	my $switch = ($mode eq '--copy') ? '' : $mode;
	my $new = PostgreSQL::Test::Cluster->new('new' . substr($mode, 2));
	$new->init;
	$new->append_conf('postgresql.conf', $conf);
	my $cwd = $new->basedir;
	my $rc = system_log('sh', '-c', "cd '$cwd' && pg_upgrade --no-sync $switch"
		  . " -d '" . $old->data_dir . "' -D '" . $new->data_dir . "'"
		  . " -b '$bindir' -B '$bindir' -s '" . $new->host . "'"
		  . " -p " . $old->port . " -P " . $new->port);
	is($rc, 0, "pg_upgrade $mode");
	$new->start;
	is($new->safe_psql('postgres', $snapshot), $before, "$mode: tables and counters as before");
	# the handler still runs, once per message
	$new->safe_psql('postgres',
		q{UPDATE pacelc.messages SET run_at = now() WHERE queue = 'orders'});
	$new->poll_query_until('postgres',
		q{SELECT count(*) = 5 FROM pacelc.messages WHERE queue = 'orders' AND state = 'done'})
	  or die "$mode: messages were not handled";
	is($new->safe_psql('postgres', 'SELECT count(*), count(DISTINCT msg) FROM shop.effects'),
		'5|5', "$mode: each pending message handled once");
	# reservations and queues keep working
	is($new->safe_psql('postgres', q{
		SET ROLE regress_pacelc_shop;
		SELECT pacelc.release(id) FROM pacelc.reservations WHERE sku = 'tee' AND state = 'held';
		SELECT pacelc.available('tee'), (SELECT count(*) FROM pacelc.verify())}),
		"\n98|0", "$mode: holds released after the upgrade");
	$new->stop;
}

done_testing();
