# pacelc on Citus: a coordinator and two workers on 127.0.0.1, with
# shared_preload_libraries = 'citus,pacelc' and both extensions on every
# node, set up with pacelc.citus_setup().  Through the coordinator:
#   * set_stock/reserve/confirm/release reach the SKU's node, reservation
#     ids carry their node group, and a confirm never reaches another row;
#   * hot SKUs on both workers and carts across both workers, 16 clients
#     (pgbench): nothing oversold;
#   * carts across nodes are all or nothing (Citus two-phase commit), and
#     a reservation commits with an order row of a distributed table on the
#     other worker;
#   * kill -9 of a worker before PREPARE (nothing stays held anywhere), and
#     between PREPARE and COMMIT PREPARED: the prepared hold stays taken
#     across the restart, and Citus's recover_prepared_transactions()
#     commits it;
#   * read-your-writes on a worker's standby with the token
#     pacelc.citus_token(sku) returns through the coordinator;
#   * shard moves and splits of pacelc.sku_home are refused.
# Then verify() is clean on every node (and citus_verify() through the
# coordinator, which also finds a SKU stocked on the wrong worker), nothing
# is left prepared, and stocked = held + confirmed + available across the
# cluster.
#
# Skipped on PostgreSQL 15 (Citus supports 16 and later) and where Citus is
# not installed; test/run-tests.sh builds Citus into the PostgreSQL 17 and
# 18 roots and sets PACELC_CITUS_REQUIRED=1, so there a missing Citus fails.
use strict;
use warnings FATAL => 'all';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use PacelcTest;
use IPC::Run;
use Time::HiRes qw(usleep);

my $pg_config = $ENV{PG_CONFIG} // 'pg_config';
my ($major) = `$pg_config --version` =~ /PostgreSQL (\d+)/;
plan skip_all => 'Citus supports PostgreSQL 16 and later, not ' . ($major // '?')
  if !$major || $major < 16;
my $libdir = `$pg_config --pkglibdir`;
chomp $libdir;
if (!-e "$libdir/citus.so")
{
	if ($ENV{PACELC_CITUS_REQUIRED})
	{
		fail("Citus is installed in $libdir (test/citus-build.sh should have built it)");
		done_testing();
		exit;
	}
	plan skip_all => "Citus is not installed ($libdir/citus.so missing; test/citus-build.sh builds it)";
}

# ---------------------------------------------------------------------
# The cluster
my %node;
for my $name (qw(coord w1 w2))
{
	my $n = PostgreSQL::Test::Cluster->new($name);
	# w1 gets a standby; the coordinator's commits wait for a synchronous
	# standby in the kill -9 test below (both need WAL senders)
	$n->init(allows_streaming => ($name eq 'w2' ? 0 : 1));
	$n->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'citus,pacelc'
listen_addresses = '127.0.0.1'
max_connections = 100
max_prepared_transactions = 100
pacelc.databases = 'postgres'
citus.shard_count = 8
citus.recover_2pc_interval = -1
log_statement = none
});
	$n->start;
	$n->safe_psql('postgres', 'CREATE EXTENSION citus; CREATE EXTENSION pacelc;');
	$node{$name} = $n;
}
my ($coord, $w1, $w2) = @node{qw(coord w1 w2)};
my $host = '127.0.0.1';
$coord->safe_psql('postgres', qq{
	SELECT pg_catalog.citus_set_coordinator_host('$host', ${\ $coord->port});
	SELECT pg_catalog.citus_add_node('$host', ${\ $w1->port});
	SELECT pg_catalog.citus_add_node('$host', ${\ $w2->port});
});

# without Citus's metadata there is nothing to set up: a clear error
my ($rc, $out, $err) = $w1->psql('postgres', 'SELECT * FROM pacelc.citus_setup()');
like($err, qr/must run on the Citus coordinator/, 'citus_setup() on a worker: refused');

my $setup = $coord->safe_psql('postgres',
	'SELECT node_group, first_reservation_id FROM pacelc.citus_setup()');
is($setup, "1|281474976710657\n2|562949953421313",
	'citus_setup(): every worker has its own range of reservation ids');
is($coord->safe_psql('postgres', 'SELECT count(*) FROM pacelc.citus_setup()'),
	'2', 'citus_setup() may run again');

my %group = (1 => $w1, 2 => $w2);
# SKUs per node group, as Citus routes them
my %skus;
for my $row (split /\n/, $coord->safe_psql('postgres', q{
	SELECT pl.groupid, x.s
	  FROM pg_catalog.generate_series(1, 200) i,
		   LATERAL (SELECT 'sku-' || i AS s) x
	  JOIN pg_catalog.pg_dist_placement pl
		ON pl.shardid = pg_catalog.get_shard_id_for_distribution_column('pacelc.sku_home', x.s)
	 ORDER BY i}))
{
	my ($g, $s) = split /\|/, $row;
	push @{ $skus{$g} }, $s;
}
ok(@{ $skus{1} } >= 6 && @{ $skus{2} } >= 6, 'SKUs on both workers');
my ($hot1, $c1a, $c1b, $c1c) = @{ $skus{1} };
my ($hot2, $c2a, $c2b, $c2c) = @{ $skus{2} };
my %stocked = ($hot1 => 600, $hot2 => 600);
$stocked{$_} = 100000 for ($c1a, $c1b, $c2a, $c2b);
$stocked{$_} = 5 for ($c1c, $c2c);

$coord->safe_psql('postgres', 'CREATE ROLE shop LOGIN IN ROLE pacelc_app');
$coord->safe_psql('postgres', "SELECT pacelc.set_stock('$_', $stocked{$_})") for sort keys %stocked;
is($w1->safe_psql('postgres', 'SELECT string_agg(sku, \',\' ORDER BY sku) FROM pacelc.stock'),
	join(',', sort ($hot1, $c1a, $c1b, $c1c)), 'set_stock through the coordinator: worker 1 has its SKUs');
is($w2->safe_psql('postgres', 'SELECT string_agg(sku, \',\' ORDER BY sku) FROM pacelc.stock'),
	join(',', sort ($hot2, $c2a, $c2b, $c2c)), 'set_stock through the coordinator: worker 2 has its SKUs');
# one stock call per statement: Citus delegates "SELECT f(...)" alone
is($coord->safe_psql('postgres', "SELECT pacelc.add_stock('$c1c', 0)") . '|'
	  . $coord->safe_psql('postgres', "SELECT pacelc.available('$c2c')"),
	'5|5', 'add_stock and available through the coordinator');

sub cpsql
{
	my ($sql, %opt) = @_;
	my ($r, $o, $e) = $coord->psql('postgres', $sql,
		extra_params => [ '-U', $opt{user} // 'shop' ]);
	return ($r, $o, $e);
}

# ---------------------------------------------------------------------
# Ids and routing: a confirm never reaches another node's row
my $id1 = $coord->safe_psql('postgres', "SELECT pacelc.reserve('$c1a', 1)",
	extra_params => [ '-U', 'shop' ]);
my $id2 = $coord->safe_psql('postgres', "SELECT pacelc.reserve('$c2a', 1)",
	extra_params => [ '-U', 'shop' ]);
is($id1 >> 48, 1, "an id made on worker 1 carries node group 1 ($id1)");
is($id2 >> 48, 2, "an id made on worker 2 carries node group 2 ($id2)");
($rc, $out, $err) = cpsql("SELECT pacelc.confirm($id1)");
like($err, qr/does not exist.*HINT:.*this one: group 1/s,
	'confirm(id) on the coordinator: does not exist, with a hint (never another row)');
($rc, $out, $err) = cpsql("SELECT pacelc.confirm($id1, '$c1b')");
like($err, qr/no reservation $id1 of SKU/, 'confirm(id, another SKU of the same node): does not exist');
($rc, $out, $err) = cpsql("SELECT pacelc.confirm($id1, '$c2a')");
like($err, qr/does not exist/, 'confirm(id, a SKU of the other node): does not exist');
is($w1->safe_psql('postgres', "SELECT state FROM pacelc.reservation_data WHERE id = $id1"),
	'held', '... and the reservation is untouched');
($rc, $out, $err) = cpsql("SELECT pacelc.confirm($id1, '$c1a'); SELECT pacelc.release($id2, '$c2a')");
is($rc, 0, 'confirm(id, sku) and release(id, sku) through the coordinator') or diag $err;
is($w1->safe_psql('postgres', "SELECT state FROM pacelc.reservation_data WHERE id = $id1")
	  . '/' . $w2->safe_psql('postgres', "SELECT state FROM pacelc.reservation_data WHERE id = $id2"),
	'confirmed/released', '... on their nodes');

# ---------------------------------------------------------------------
# Carts across both workers: all or nothing
($rc, $out, $err) = cpsql(
	"SELECT pacelc.citus_reserve_all('{$c1a,$c2a,$c1b,$c2b}', '{1,2,3,4}', idempotency_key => 'cart-1')");
is($rc, 0, 'citus_reserve_all across both workers commits') or diag $err;
my @ids = $out =~ /(\d+)/g;
is_deeply([ map { $_ >> 48 } @ids ], [ 1, 2, 1, 2 ], 'ids in argument order, each from its node');
my ($rc2, $out2) = cpsql(
	"SELECT pacelc.citus_reserve_all('{$c1a,$c2a,$c1b,$c2b}', '{1,2,3,4}', idempotency_key => 'cart-1')");
is($out2, $out, 'the same cart with the same key: the same ids, nothing more held');
($rc, $out, $err) = cpsql(qq{
	BEGIN;
	SELECT pacelc.reserve('$c1a', 1);
	SELECT pacelc.reserve('$c2a', 1);
	COMMIT;});
is($rc, 0, 'BEGIN; reserve on worker 1; reserve on worker 2; COMMIT: commits') or diag $err;
# a reservation and an order row (a distributed table of the application)
# in one transaction, the order on the other worker
$coord->safe_psql('postgres', q{
	CREATE TABLE public.orders (order_id bigint PRIMARY KEY, sku text, reservation bigint);
	SELECT pg_catalog.create_distributed_table('public.orders', 'order_id');
	GRANT ALL ON public.orders TO shop;
});
my $order_id = $coord->safe_psql('postgres', qq{
	SELECT o FROM pg_catalog.generate_series(1, 100) o
	  JOIN pg_catalog.pg_dist_placement pl
		ON pl.shardid = pg_catalog.get_shard_id_for_distribution_column('public.orders', o)
	 WHERE pl.groupid = 2 LIMIT 1});
($rc, $out, $err) = cpsql(qq{
	BEGIN;
	SELECT pacelc.reserve('$c1a', 1) AS rid \\gset
	INSERT INTO public.orders VALUES ($order_id, '$c1a', :rid);
	COMMIT;});
is($rc, 0, 'a reservation on worker 1 and an order row on worker 2 in one transaction') or diag $err;
my $order_rid = $coord->safe_psql('postgres', "SELECT reservation FROM public.orders WHERE order_id = $order_id");
is($w1->safe_psql('postgres', "SELECT state FROM pacelc.reservation_data WHERE id = $order_rid"),
	'held', '... both committed (the order row names the hold)');

my $held_before = $w1->safe_psql('postgres', "SELECT held FROM pacelc.stock WHERE sku = '$c1a'");
($rc, $out, $err) = cpsql("SELECT pacelc.citus_reserve_all('{$c1a,$c2c}', '{1,6}')");
like($err, qr/insufficient stock|PC001/, 'a cart with a line short on worker 2: PC001');
is($w1->safe_psql('postgres', "SELECT held FROM pacelc.stock WHERE sku = '$c1a'"),
	$held_before, '... and its line on worker 1 holds nothing');
is($w1->safe_psql('postgres', "SELECT pacelc.available('$c1a') = available FROM pacelc.stock WHERE sku = '$c1a'"),
	't', '... not even in the escrow counter');

# ---------------------------------------------------------------------
# Hot SKUs on both workers and carts across them: 16 clients through the
# coordinator
my $dir = $coord->basedir;
write_file("$dir/hot1.sql", "SELECT pacelc.try_reserve('$hot1', 1);\n");
write_file("$dir/hot2.sql", "SELECT pacelc.try_reserve('$hot2', 1);\n");
write_file("$dir/cart.sql",
	"SELECT pacelc.citus_reserve_all('{$c1b,$c2b}', '{1,1}');\n");
write_file("$dir/cart2.sql",
	"BEGIN;\nSELECT pacelc.reserve('$c2b', 1);\nSELECT pacelc.reserve('$c1b', 1);\nCOMMIT;\n");
my ($bout, $berr) = ('', '');
IPC::Run::run(
	[
		'pgbench', '-n', '-M', 'prepared', '-c', 16, '-j', 2, '-T', 8,
		'-f', "$dir/hot1.sql\@4", '-f', "$dir/hot2.sql\@4",
		'-f', "$dir/cart.sql\@1", '-f', "$dir/cart2.sql\@1",
		'-h', $coord->host, '-p', $coord->port, '-U', 'shop', 'postgres'
	],
	'>', \$bout, '2>', \$berr);
my ($tx) = $bout =~ /number of transactions actually processed: (\d+)/;
my ($failed) = $bout =~ /number of failed transactions: (\d+)/;
ok($tx && $tx > 0, "pgbench: 16 clients through the coordinator, $tx transactions")
  or diag "$bout\n$berr";
ok(!$failed && $berr !~ /ERROR|aborted/, 'pgbench: no client failed') or diag $berr;
for my $hot ($hot1, $hot2)
{
	my $w = $hot eq $hot1 ? $w1 : $w2;
	my $held = $w->safe_psql('postgres', "SELECT held FROM pacelc.stock WHERE sku = '$hot'");
	ok($held > 0 && $held <= $stocked{$hot}, "hot SKU $hot: $held of $stocked{$hot} held, never more");
}
my $carts1 = $w1->safe_psql('postgres', "SELECT count(*) FROM pacelc.reservation_data WHERE sku = '$c1b'");
my $carts2 = $w2->safe_psql('postgres', "SELECT count(*) FROM pacelc.reservation_data WHERE sku = '$c2b'");
ok($carts1 > 1, "carts across both workers committed under load ($carts1 lines)");
is($carts1, $carts2, 'every cart has its line on both workers');

# ---------------------------------------------------------------------
# Read-your-writes on a worker's standby: the token comes back through
# the coordinator and names its node
$w1->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('w1_standby');
$standby->init_from_backup($w1, 'b', has_streaming => 1);
# the key Citus made for TLS between nodes, as the copy left it
chmod 0600, $standby->data_dir . '/server.key' if -e $standby->data_dir . '/server.key';
$standby->start;
my $rid = $coord->safe_psql('postgres', "SELECT pacelc.reserve('$c1a', 1)");
my $token = $coord->safe_psql('postgres', "SELECT pacelc.citus_token('$c1a')");
like($token, qr/^\d+:[0-9A-F]+\/[0-9A-F]+$/, "citus_token(sku) through the coordinator: $token");
is($standby->safe_psql('postgres',
		"SET pacelc.read_after = '$token'; SELECT state FROM pacelc.reservation_data WHERE id = $rid"),
	'held', "worker 1's standby with the token: reads the write");
my $token2 = $coord->safe_psql('postgres', "SELECT pacelc.citus_token('$c2a')");
($rc, $out, $err) = $standby->psql('postgres', "SET pacelc.read_after = '$token2'");
like($err, qr/system identifier/, "worker 2's token on worker 1's standby: refused (22023)");
($rc, $out, $err) = cpsql(
	"BEGIN; SELECT pacelc.reserve('$c1a', 1); SELECT pacelc.citus_token('$c1a'); COMMIT;");
like($err, qr/cannot take a node token in a transaction that has written/,
	'a token before the commit it should cover: refused');
is(scalar(() = $coord->safe_psql('postgres', 'SELECT token FROM pacelc.citus_tokens()') =~ /:/g),
	2, 'citus_tokens(): a token per worker');
($rc, $out, $err) = cpsql(
	"BEGIN; SELECT pacelc.reserve('$c1a', 1); SELECT * FROM pacelc.citus_tokens(); COMMIT;");
like($err, qr/cannot run in a transaction that has worked on other nodes/,
	'citus_tokens() after a write in the same transaction: refused');
$standby->stop;

# kill -9 of a node: the postmaster and every process it started (so that
# no backend of it can still answer), then wait until they are gone
sub kill_all
{
	my ($n) = @_;
	my $pm = $n->{_pid};
	my @children = grep { /^\d+$/ } split /\s+/, `pgrep -P $pm`;
	kill 'KILL', $pm, @children;
	for (1 .. 100)
	{
		last unless grep { kill 0, $_ } $pm, @children;
		usleep(50_000);
	}
}

sub restart
{
	my ($n) = @_;
	for (1 .. 100)
	{
		$n->{_pid} = undef;    # a failed start reads the stale pid file
		last if $n->start(fail_ok => 1);
		usleep(200_000);
	}
}

# ---------------------------------------------------------------------
# kill -9 of worker 2 before PREPARE: a cart's transaction is open on both
# workers when worker 2 dies; its COMMIT fails, and no unit stays held on
# either worker
my $before1 = $w1->safe_psql('postgres', "SELECT pacelc.available('$c1a')");
my $before2 = $w2->safe_psql('postgres', "SELECT pacelc.available('$c2a')");
my $bg = $coord->background_psql('postgres', on_error_stop => 0,
	extra_params => [ '-U', 'shop' ]);
$bg->query("BEGIN");
$bg->query("SELECT pacelc.reserve('$c1a', 3)");
$bg->query("SELECT pacelc.reserve('$c2a', 3)");
cmp_ok($w1->safe_psql('postgres', "SELECT pacelc.available('$c1a')"), '==', $before1 - 3,
	'an open cart holds its units on worker 1');
kill_all($w2);
$bg->query("COMMIT");
$bg->quit;
restart($w2);
ok($w1->poll_query_until('postgres', "SELECT pacelc.available('$c1a') = $before1"),
	'kill -9 of worker 2 before PREPARE: worker 1 holds nothing of the cart');
is($w1->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'), '0', '... and nothing prepared');
is($w2->safe_psql('postgres', "SELECT pacelc.available('$c2a')") . '/'
	  . $w2->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'),
	"$before2/0", '... nor worker 2 after its restart');

# ---------------------------------------------------------------------
# kill -9 of worker 2 between PREPARE and COMMIT PREPARED.  The
# coordinator's commit waits for a synchronous standby that does not
# exist: by then both workers have prepared and the coordinator's commit
# record (with Citus's transaction log) is written.
my $cart_qty = 7;
my $avail2 = $w2->safe_psql('postgres', "SELECT pacelc.available('$c2a')");
# a reload is asynchronous: wait until new sessions have the setting
sub coord_sync_names
{
	my ($value) = @_;
	$coord->append_conf('postgresql.conf', "synchronous_standby_names = '$value'");
	$coord->reload;
	for (1 .. 100)
	{
		last if $coord->safe_psql('postgres', 'SHOW synchronous_standby_names') eq $value;
		usleep(50_000);
	}
	# The checkpointer publishes it to committing backends when it gets to
	# its reload, which a fixed pause could outlast on a busy machine.
	# Setting it: wait until a probe's commit waits for the standby (then
	# cancel that wait; the probe's temporary table goes with its session).
	# The probe must write WAL: a commit that wrote none (txid_current()
	# alone) never waits for a standby.  Clearing it releases
	# the waiting commits by itself.
	return if $value eq '';
	for (1 .. 100)
	{
		local $ENV{PGAPPNAME} = 'pacelc_sync_probe';
		my ($pout, $perr) = ('', '');
		my $probe = IPC::Run::start(
			[
				'psql', '-X', '-At', '-h', $coord->host, '-p', $coord->port,
				'-d', 'postgres', '-c', 'CREATE TEMP TABLE pacelc_sync_probe ()'
			],
			'>', \$pout, '2>', \$perr);
		my $waits = 0;
		for (1 .. 600)
		{
			$waits = $coord->safe_psql('postgres', q{
				SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity
				 WHERE application_name = 'pacelc_sync_probe' AND wait_event = 'SyncRep'});
			last if $waits;
			$probe->pump_nb;
			last unless $probe->pumpable;	# committed without waiting
			usleep(50_000);
		}
		# cancelled (or ended): it exits now; still connecting after 30 s: kill it
		($waits || !$probe->pumpable) ? $probe->finish : $probe->kill_kill;
		return if $waits;
		usleep(100_000);
	}
	die "synchronous_standby_names = '$value' does not reach committing backends";
}
coord_sync_names('pacelc_nobody');
my ($cout, $cerr) = ('', '');
# named: every commit that writes now waits (Citus's maintenance daemon's
# too), and only the cart's wait says that both workers have prepared
my $cart;
{
	local $ENV{PGAPPNAME} = 'pacelc_cart_kill';
	$cart = IPC::Run::start(
		[
			'psql', '-X', '-At', '-h', $coord->host, '-p', $coord->port, '-U', 'shop',
			'-d', 'postgres', '-c',
			"SELECT pacelc.citus_reserve_all('{$c1a,$c2a}', '{$cart_qty,$cart_qty}', idempotency_key => 'cart-kill')"
		],
		'>', \$cout, '2>', \$cerr);
}
my $waiting = 0;
for (1 .. 300)
{
	$waiting = $coord->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pacelc_cart_kill' AND wait_event = 'SyncRep'");
	last if $waiting;
	$cart->pump_nb;
	last unless $cart->pumpable;	# the cart ended already (an error)
	usleep(100_000);
}
is($waiting, 1, "the cart's commit waits after PREPARE on both workers");
is($w2->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts') . '/'
	  . $w1->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'),
	'1/1', 'both workers hold the prepared transaction');
# the postmaster and every process it started, so that no backend of w2
# can still take the COMMIT PREPARED
kill_all($w2);
coord_sync_names('');
$cart->finish;
like($cout, qr/^\{\d+,\d+\}$/, 'the cart commits on the coordinator') or diag $cerr;
my ($kid1, $kid2) = $cout =~ /(\d+),(\d+)/;
$kid1 //= 0;
$kid2 //= 0;
is($w1->safe_psql('postgres', "SELECT state FROM pacelc.reservation_data WHERE id = $kid1"),
	'held', 'worker 1 committed its line (COMMIT PREPARED)');
restart($w2);
is($w2->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'),
	'1', 'worker 2 restarted with the transaction still prepared');
cmp_ok($w2->safe_psql('postgres', "SELECT pacelc.available('$c2a')"), '<=', $avail2 - $cart_qty,
	"worker 2 after kill -9: the prepared hold stays taken (no oversell)");
$coord->safe_psql('postgres', 'SELECT pg_catalog.recover_prepared_transactions()');
is($w2->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'),
	'0', 'recover_prepared_transactions() settled it');
is($w2->safe_psql('postgres', "SELECT state FROM pacelc.reservation_data WHERE id = $kid2"),
	'held', 'worker 2 committed its line: the cart is whole');
is($w2->safe_psql('postgres', "SELECT pacelc.available('$c2a')"), $avail2 - $cart_qty,
	'worker 2: the escrow counter counts the hold once');

# ---------------------------------------------------------------------
# Shard moves are refused
my $shard = $coord->safe_psql('postgres',
	"SELECT pg_catalog.get_shard_id_for_distribution_column('pacelc.sku_home', '$c1a')");
($rc, $out, $err) = $coord->psql('postgres', qq{
	SELECT pg_catalog.citus_move_shard_placement($shard, '$host', ${\ $w1->port}, '$host', ${\ $w2->port},
												 shard_transfer_mode => 'block_writes')});
like($err, qr/shards of table "pacelc.sku_home" cannot move/, 'citus_move_shard_placement: refused');
is($coord->safe_psql('postgres', "SELECT groupid FROM pg_catalog.pg_dist_placement WHERE shardid = $shard"),
	'1', '... the shard stays on its worker');
my ($lo, $hi) = split /\|/, $coord->safe_psql('postgres',
	"SELECT shardminvalue, shardmaxvalue FROM pg_catalog.pg_dist_shard WHERE shardid = $shard");
my $mid = int(($lo + $hi) / 2);
my ($n1, $n2) = split /\n/, $coord->safe_psql('postgres',
	'SELECT nodeid FROM pg_catalog.pg_dist_node WHERE groupid > 0 ORDER BY groupid');
($rc, $out, $err) = $coord->psql('postgres', qq{
	SELECT pg_catalog.citus_split_shard_by_split_points($shard, ARRAY['$mid'], ARRAY[$n1, $n2],
														 shard_transfer_mode => 'block_writes')});
like($err, qr/shards of table "pacelc.sku_home" cannot move/, 'citus_split_shard_by_split_points: refused');
is($coord->safe_psql('postgres',
		"SELECT count(*) FROM pg_catalog.pg_dist_shard WHERE logicalrelid = 'pacelc.sku_home'::regclass"),
	'8', '... no shard was split');

# ---------------------------------------------------------------------
# The books, on every node and across the cluster
for my $name (qw(coord w1 w2))
{
	my $n = $node{$name};
	is($n->safe_psql('postgres', 'SELECT count(*) FROM pacelc.verify()'), '0', "$name: verify() is clean");
	is($n->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'), '0', "$name: nothing left prepared");
}
is($coord->safe_psql('postgres', 'SELECT count(*) FROM pacelc.citus_verify()', extra_params => [ '-U', 'shop' ]),
	'0', 'citus_verify() through the coordinator: clean');
# a SKU stocked on the wrong worker: a worker delegates "SELECT f(...)" to
# the owner too, so it takes a form Citus does not delegate (two columns)
$w2->safe_psql('postgres', "SELECT pacelc.set_stock('$c1c', 0), 1");
$stocked{"$c1c\@w2"} = 0;
is($coord->safe_psql('postgres', 'SELECT node, problem, sku FROM pacelc.citus_verify()'),
	"$host:${\ $w2->port}|sku_on_wrong_node|$c1c", 'citus_verify(): a SKU stocked on a worker that does not own it');
my ($sum_stocked, $sum_books) = (0, 0);
for my $w ($w1, $w2)
{
	for my $row (split /\n/, $w->safe_psql('postgres', q{
		SELECT s.sku, s.held, s.available, pacelc.available(s.sku),
			   (SELECT coalesce(sum(r.qty), 0) FROM pacelc.reservation_data r
				 WHERE r.sku = s.sku AND r.state = 'confirmed')
		  FROM pacelc.stock s ORDER BY 1}))
	{
		my ($sku, $held, $avail, $escrow, $confirmed) = split /\|/, $row;
		is($escrow, $avail, "$sku: escrow counter = on_hand - held");
		$sum_stocked += $stocked{$w == $w2 && $sku eq $c1c ? "$c1c\@w2" : $sku};
		$sum_books += $held + $confirmed + $avail;
	}
}
is($sum_books, $sum_stocked, "across the cluster: stocked ($sum_stocked) = held + confirmed + available");

done_testing();
