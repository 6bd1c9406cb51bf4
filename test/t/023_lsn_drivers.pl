# The token flow from real drivers and poolers (issue 11): write on the
# primary, take the token the driver received (ParameterStatus), read on a
# standby that applies WAL 100 ms late (a read follows its write within a
# few ms, so one that did not wait would be stale).  Every read must see its
# write (or fail with a retryable error); none may be stale.
#   libpq (C): simple protocol, extended protocol with a named prepared
#              statement re-executed, pipeline mode
#   psycopg2, psycopg 3 (Debian's python3-psycopg, statements prepared on
#   the server), node-postgres and postgres.js (npm install pg postgres;
#   skipped if npm cannot)
#   PgBouncer (Debian package): session and transaction pooling
use strict;
use warnings FATAL => 'all';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use LsnDriver;
use PacelcTest;
use JSON::PP;
use Time::HiRes qw(usleep time);

my $trials = $ENV{PACELC_DRIVER_TRIALS} // 15;

my $primary = pacelc_node('dprimary', allows_streaming => 1, conf => qq{
log_statement = none
max_connections = 30
});
$primary->safe_psql('postgres', q{
	CREATE EXTENSION pacelc;
	CREATE TABLE t (id bigserial PRIMARY KEY, note text);
	CREATE INDEX ON t (note);
	CREATE TABLE orders (id bigserial PRIMARY KEY, note text);
	CREATE TABLE churn (x int);
});
my $standby = pacelc_standby($primary, 'dstandby', backup => 'b', conf => qq{
recovery_min_apply_delay = '100ms'
pacelc.wait_timeout = '20s'
});
$primary->wait_for_catchup($standby);

# one write on the primary through driver $w, its token as the driver got it
my $n = 0;
sub write_row
{
	my ($w, $prefix) = @_;
	my $note = sprintf('%s%d', $prefix, $n++);
	my $ans = $w->cmd('Q', "INSERT INTO t (note) VALUES ('$note')");
	die "insert failed: $ans" unless $ans eq 'OK ';
	return ($note, $w->cmd('S', 'pacelc.commit_lsn'));
}

# --- libpq (under a steady write load: snapshots keep changing) -----------
my $load = start_pgbench($primary,
	"INSERT INTO churn SELECT g FROM generate_series(1, 20) g;\n", clients => 2, seconds => 120);
my $w = LsnDriver->new($primary->connstr('postgres'));
my $r = LsnDriver->new($standby->connstr('postgres'));
$r->cmd('P', 'cnt', 'SELECT count(*) FROM t WHERE note = $1');
my %bad = (simple => 0, extended => 0, pipeline => 0, 'extended, REPEATABLE READ' => 0);
my %err;
for my $i (1 .. $trials)
{
	my ($note, $tok) = write_row($w, 'lq');
	my $ans = $r->cmd('Q', "SET pacelc.read_after = '$tok'");
	$ans = $r->cmd('Q', "SELECT count(*) FROM t WHERE note = '$note'") if $ans eq 'OK ';
	$bad{simple}++ if $ans ne 'OK 1';
	$err{simple} = $ans if $ans ne 'OK 1';

	($note, $tok) = write_row($w, 'lx');
	$ans = $r->cmd('X', q{SELECT set_config('pacelc.read_after', $1, false)}, $tok);
	$ans = $r->cmd('E', 'cnt', $note) if $ans eq "OK $tok";
	$bad{extended}++ if $ans ne 'OK 1';
	$err{extended} = $ans if $ans ne 'OK 1';

	($note, $tok) = write_row($w, 'lp');
	$ans = $r->cmd('PIPE', 'cnt', $tok, $note);
	$bad{pipeline}++ if $ans ne 'OK 1';
	$err{pipeline} = $ans if $ans ne 'OK 1';

	# the token before BEGIN: a REPEATABLE READ snapshot that includes it
	($note, $tok) = write_row($w, 'lr');
	$r->cmd('X', q{SELECT set_config('pacelc.read_after', $1, false)}, $tok);
	$r->cmd('Q', 'BEGIN ISOLATION LEVEL REPEATABLE READ');
	$ans = $r->cmd('E', 'cnt', $note);
	$r->cmd('Q', 'COMMIT');
	$bad{'extended, REPEATABLE READ'}++ if $ans ne 'OK 1';
	$err{'extended, REPEATABLE READ'} = $ans if $ans ne 'OK 1';
}
$load->kill_kill;
for my $mode ('simple', 'extended', 'pipeline', 'extended, REPEATABLE READ')
{
	is($bad{$mode}, 0, "libpq $mode protocol: $trials reads after the token all saw their write, no 40001"
		  . ($err{$mode} ? " (last: $err{$mode})" : ''));
}
my $seen = $r->cmd('S', 'pacelc.seen_lsn');
like($seen, qr{^[0-9A-F]+/[0-9A-F]+$}, "libpq: seen_lsn reported ($seen)");
$r->cmd('Q', 'RESET pacelc.read_after');
# done with them: their sessions must not outlive the drivers' timeout
# while slow installs (npm) run below
$w->quit;
$r->quit;

# --- psycopg2 --------------------------------------------------------------
SKIP:
{
	skip 'python3-psycopg2 is not installed', 1 unless have_python_module('psycopg2');
	my ($stdout, $stderr);
	my $dsn = sub { 'host=' . $_[0]->host . ' port=' . $_[0]->port . ' dbname=postgres' };
	IPC::Run::run([ '/usr/bin/python3', "$FindBin::RealBin/lsn_client.py", 'trials',
		$dsn->($primary), $dsn->($standby), $trials, 'token', 'read committed' ],
		'>', \$stdout, '2>', \$stderr) or die "lsn_client.py failed: $stderr";
	my $res = decode_json($stdout);
	is($res->{stale}, 0, "psycopg2: $trials reads after the token all saw their write (p50 $res->{p50_ms} ms)");
}

# --- psycopg 3 (server-side prepared statements) ---------------------------
SKIP:
{
	skip 'python3-psycopg (psycopg 3) is not installed', 2
	  unless have_python_module('psycopg');
	my ($stdout, $stderr);
	my $dsn = sub { 'host=' . $_[0]->host . ' port=' . $_[0]->port . ' dbname=postgres' };
	IPC::Run::run([ '/usr/bin/python3', "$FindBin::RealBin/lsn_psycopg3.py",
		$dsn->($primary), $dsn->($standby), $trials ],
		'>', \$stdout, '2>', \$stderr) or die "lsn_psycopg3.py failed: $stderr";
	my $res = decode_json($stdout);
	is($res->{stale} + $res->{errors}, 0,
		"psycopg 3 (prepared on the server): $trials reads after the token all saw their write");
	is($res->{reported}, $trials, 'psycopg 3: every commit reported the token');
}

# --- node-postgres and postgres.js ------------------------------------------
SKIP:
{
	my $node = `sh -c 'command -v node'`;
	chomp $node;
	skip 'node is not installed', 4 unless $node;
	my $dir = "$PostgreSQL::Test::Utils::tmp_check/node";
	mkdir $dir;
	my ($out, $err) = ('', '');
	# a registry that does not answer in time skips these, as one that
	# fails does (IPC::Run's timeout dies: catch it)
	my $ok = (-d "$dir/node_modules/pg" && -d "$dir/node_modules/postgres") || eval {
		IPC::Run::run(
			[ 'npm', 'install', '--no-audit', '--no-fund', '--no-save', '--prefix', $dir,
			  '--cache', "$dir/.npm-cache", 'pg', 'postgres' ],
			'>', \$out, '2>', \$err, IPC::Run::timeout(300));
	};
	$err .= $@ if $@;
	skip "npm install pg postgres failed: $err", 4
	  unless $ok && -d "$dir/node_modules/pg" && -d "$dir/node_modules/postgres";
	local $ENV{NODE_PATH} = "$dir/node_modules";
	for my $mode ([ 'pg', 'node-postgres (named prepared statement)' ],
		[ 'postgresjs', 'postgres.js (pool, sql.begin, set_config local)' ])
	{
		($out, $err) = ('', '');
		IPC::Run::run([ $node, "$FindBin::RealBin/lsn_node.js", $mode->[0], $primary->host,
			$primary->port, $standby->port, $trials ], '>', \$out, '2>', \$err)
		  or die "lsn_node.js $mode->[0] failed: $err";
		my $res = decode_json($out);
		is($res->{stale} + $res->{errors}, 0,
			"$mode->[1]: $trials reads after the token all saw their write");
		is($res->{reported}, $trials, "$mode->[1]: every commit reported the token");
	}
}

# --- PgBouncer -------------------------------------------------------------
SKIP:
{
	my $pgb = -x '/usr/sbin/pgbouncer' ? '/usr/sbin/pgbouncer' : `sh -c 'command -v pgbouncer'`;
	chomp $pgb;
	skip 'pgbouncer is not installed', 4 unless $pgb;
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $dir = "$PostgreSQL::Test::Utils::tmp_check/pgbouncer";
	mkdir $dir;
	my ($ph, $pp, $sh, $sp) = ($primary->host, $primary->port, $standby->host, $standby->port);
	open my $fh, '>', "$dir/pgbouncer.ini" or die;
	print $fh qq{[databases]
p_tx = host=$ph port=$pp dbname=postgres user=postgres pool_mode=transaction pool_size=2
s_tx = host=$sh port=$sp dbname=postgres user=postgres pool_mode=transaction pool_size=1
p_se = host=$ph port=$pp dbname=postgres user=postgres pool_mode=session
s_se = host=$sh port=$sp dbname=postgres user=postgres pool_mode=session
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = any
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
ignore_startup_parameters = extra_float_digits
};
	close $fh;
	my ($out, $err) = ('', '');
	my $bouncer = IPC::Run::start([ $pgb, "$dir/pgbouncer.ini" ], '>', \$out, '2>', \$err);
	my $cs = sub { "host=127.0.0.1 port=$port dbname=$_[0] user=postgres" };
	my $up = 0;
	for (1 .. 50)
	{
		$up = system("psql -X -q -c 'SELECT 1' '" . $cs->('p_se') . "' >/dev/null 2>&1") == 0;
		last if $up;
		usleep(100_000);
	}
	skip "pgbouncer did not start: $err", 4 unless $up;

	# session pooling: SET pacelc.read_after as on a direct connection
	my $pw = LsnDriver->new($cs->('p_se'));
	my $sr = LsnDriver->new($cs->('s_se'));
	my ($bad, $last) = (0, '');
	for my $i (1 .. $trials)
	{
		my ($note, $tok) = write_row($pw, 'bs');
		my $ans = $sr->cmd('Q', "SET pacelc.read_after = '$tok'");
		$ans = $sr->cmd('Q', "SELECT count(*) FROM t WHERE note = '$note'") if $ans eq 'OK ';
		($bad, $last) = ($bad + 1, $ans) if $ans ne 'OK 1';
	}
	is($bad, 0, "PgBouncer session pooling: $trials reads after the token saw their write ($last)");
	$pw->quit;
	$sr->quit;

	# transaction pooling: the token reported through the pooler, SET LOCAL
	# inside each transaction, a bind parameter for the read
	$pw = LsnDriver->new($cs->('p_tx'));
	$sr = LsnDriver->new($cs->('s_tx'));
	($bad, $last) = (0, '');
	my $tokens = 0;
	for my $i (1 .. $trials)
	{
		my ($note, $tok) = write_row($pw, 'bt');
		$tokens++ if $tok =~ m{/};
		$sr->cmd('Q', 'BEGIN');
		my $ans = $sr->cmd('Q', "SET LOCAL pacelc.read_after = '$tok'");
		$ans = $sr->cmd('X', 'SELECT count(*) FROM t WHERE note = $1', $note) if $ans eq 'OK ';
		$sr->cmd('Q', 'COMMIT');
		($bad, $last) = ($bad + 1, $ans) if $ans ne 'OK 1';
	}
	is($tokens, $trials, 'PgBouncer transaction pooling: the commit token is reported through the pooler');
	is($bad, 0, "PgBouncer transaction pooling: $trials reads with SET LOCAL saw their write ($last)");

	# seen_lsn per transaction: two clients share the standby's one server
	# connection; with the primary idle, the second client's transaction
	# does not change the backend's value, and must still get it
	$primary->wait_for_catchup($standby);
	my $a = LsnDriver->new($cs->('s_tx'));
	my $b = LsnDriver->new($cs->('s_tx'));
	my $missing = 0;
	my @seen;
	for my $i (1 .. 6)
	{
		my $c = $i % 2 ? $a : $b;
		my $before = $c->cmd('S', 'pacelc.seen_lsn');
		$c->cmd('Q', 'SELECT count(*) FROM t');
		my $after = $c->cmd('S', 'pacelc.seen_lsn');
		push @seen, $after;
		$missing++ if $after !~ m{/};
	}
	is($missing, 0, "PgBouncer transaction pooling: every client got seen_lsn in its transaction (@seen)");
	$_->quit for ($a, $b, $pw, $sr);
	$bouncer->kill_kill;
}

$standby->stop;
$primary->stop;
done_testing();
