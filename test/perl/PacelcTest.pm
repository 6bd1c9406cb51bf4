# Helpers shared by pacelc's TAP tests: nodes with pacelc preloaded, standbys,
# pgbench in the background with inline scripts.
package PacelcTest;

use strict;
use warnings FATAL => 'all';
use Exporter 'import';
use IPC::Run;
use Time::HiRes ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

our @EXPORT = qw(pacelc_node pacelc_standby start_pgbench write_file have_python_module
  shop_role_sql shop_grants_sql recording_queue_sql message_outcome wait_for_quiet
  wait_for_value describe_load);

# A new node with pacelc in shared_preload_libraries and the settings in
# "conf" (postgresql.conf lines), started unless "no_start".  With
# "allows_streaming" it can serve standbys (pacelc_standby).
sub pacelc_node
{
	my ($name, %opt) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(allows_streaming => $opt{allows_streaming} // 0);
	$node->append_conf('postgresql.conf',
		"shared_preload_libraries = 'pacelc'\n" . ($opt{conf} // ''));
	$node->start unless $opt{no_start};
	return $node;
}

# A streaming standby of primary, from the backup named "backup" (taken now
# unless the primary has one by that name), with "conf" added, started.
sub pacelc_standby
{
	my ($primary, $name, %opt) = @_;
	my $backup = $opt{backup} // "for_$name";
	$primary->backup($backup) unless -d $primary->backup_dir . "/$backup";
	my $standby = PostgreSQL::Test::Cluster->new($name);
	$standby->init_from_backup($primary, $backup, has_streaming => 1);
	$standby->append_conf('postgresql.conf', $opt{conf}) if defined $opt{conf};
	$standby->start;
	return $standby;
}

# Can /usr/bin/python3 import the module (psycopg2, psycopg)?  The driver
# tests skip what needs a module that is not installed.
sub have_python_module
{
	my ($module) = @_;
	return system('/usr/bin/python3', '-c', "import $module") == 0;
}

# SQL for the queue tests' application: the role regress_pacelc_shop
# (LOGIN unless login => 0) with the rights on schema pacelc that an
# application is given (shop_grants_sql alone: in another database).
sub shop_role_sql
{
	my (%opt) = @_;
	return 'CREATE ROLE regress_pacelc_shop'
	  . (($opt{login} // 1) ? ' LOGIN' : '') . ";\n"
	  . shop_grants_sql();
}

sub shop_grants_sql
{
	return "GRANT USAGE ON SCHEMA pacelc TO regress_pacelc_shop;\n"
	  . "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pacelc TO regress_pacelc_shop;\n";
}

# SQL: a table "seen" and, owned by regress_pacelc_shop, the queue $queue
# whose handler record_it(jsonb) inserts each payload into it.  Leaves
# the session as regress_pacelc_shop.
sub recording_queue_sql
{
	my ($queue) = @_;
	return qq{CREATE TABLE seen (payload jsonb);
GRANT INSERT ON seen TO regress_pacelc_shop;
CREATE FUNCTION record_it(p jsonb) RETURNS void LANGUAGE sql AS \$\$ INSERT INTO seen VALUES (p) \$\$;
SET ROLE regress_pacelc_shop;
SELECT pacelc.create_queue('$queue', 'record_it(jsonb)');
};
}

# How many messages of the queue ended done and how many dead.
sub message_outcome
{
	my ($node, $queue) = @_;
	return split /\|/, $node->safe_psql('postgres', qq{
		SELECT count(*) FILTER (WHERE state = 'done'), count(*) FILTER (WHERE state = 'dead')
		  FROM pacelc.messages WHERE queue = '$queue'});
}

# Waits until nothing that changes the books behind a test's back is still
# running, so that a comparison of the tables (one snapshot) with the escrow
# counters (live) is exact: every backend of the pgbench load has exited (a
# backend terminated or left by an aborted client gives its units back while
# it exits, after its client has gone), no hold whose ttl ends within a
# minute is still held (the worker expires it: it must be done), and no
# pacelc worker is inside a transaction.  A worker applies what its expiry
# released when it commits, after the commit is visible to other sessions,
# and reports itself idle only after that; so "no such hold, no active
# worker" read by one query means every expiry is in the counters.  Returns
# like poll_query_until.
# Polls $sql on $node until it returns $expected (a string) or, with
# $expected undef, anything non-empty, for at most $secs seconds; survives
# the server being down (a crash restart).  Returns (seconds waited, last
# output), the seconds undef on timeout.
sub wait_for_value
{
	my ($node, $sql, $expected, $secs) = @_;
	my $t0 = Time::HiRes::time();
	my $out = '';
	while (Time::HiRes::time() - $t0 < $secs)
	{
		my ($rc, $o) = $node->psql('postgres', $sql);
		$out = $o // '';
		return (Time::HiRes::time() - $t0, $out)
		  if $rc == 0 && (defined $expected ? $out eq $expected : $out ne '');
		Time::HiRes::usleep(50_000);
	}
	return (undef, $out);
}

sub wait_for_quiet
{
	my ($node, $dbname) = @_;
	return $node->poll_query_until($dbname // 'postgres', q{
		SELECT NOT EXISTS (SELECT 1 FROM pacelc.reservation_data
							WHERE state = 'held' AND expires_at < now() + interval '1 min')
		   AND NOT EXISTS (SELECT 1 FROM pg_stat_activity
							WHERE (backend_type = 'pacelc worker' AND datname = current_database()
								   AND state <> 'idle')
							   OR application_name = 'pgbench')});
}

# Writes a file and returns its path.
sub write_file
{
	my ($path, $content) = @_;
	open my $fh, '>', $path or die "could not write $path: $!";
	print $fh $content;
	close $fh;
	return $path;
}

# Starts pgbench in the background against a node, with application_name
# "pgbench" so that tests can find (and kill) its backends.  The scripts
# are inline, as in PostgreSQL's own pgbench tests: one script's text, or
# { 'name' => text, 'name@weight' => text, ... }.  Its clients may die with
# the server; callers wait for it with ->finish and may pass out => \$out,
# err => \$err to read its output then.
sub start_pgbench
{
	my ($node, $scripts, %opt) = @_;
	my ($out, $err) = ('', '');
	my @files;

	$scripts = { script => $scripts } unless ref $scripts;
	foreach my $key (sort keys %$scripts)
	{
		my ($base, $weight) = split /\@/, $key;
		my $path = write_file(
			"$PostgreSQL::Test::Utils::tmp_check/pgbench_" . $node->name . "_$base.sql",
			$scripts->{$key});
		push @files, '-f', defined $weight ? "$path\@$weight" : $path;
	}
	local $ENV{PGAPPNAME} = 'pgbench';
	return IPC::Run::start(
		[
			'pgbench', '-n', '-c', $opt{clients} // 16, '-j', 2,
			'-T', $opt{seconds} // 5, @files,
			'-h', $node->host, '-p', $node->port, $opt{dbname} // 'postgres'
		],
		'>', $opt{out} // \$out, '2>', $opt{err} // \$err);
}

# What a load started by start_pgbench is doing, for a test that gives up
# waiting for it (print it with diag before dying): every backend of the
# load (state, wait event, query), the locks they wait for or hold that
# others wait for, the SQL of "sql" (say, the stock of the SKU it buys),
# and pgbench's output so far.  With the harness h, pgbench is then killed
# (it may be stuck) so that its output is complete; out and err are the
# refs given to start_pgbench.
sub describe_load
{
	my ($node, %opt) = @_;
	my $dbname = $opt{dbname} // 'postgres';
	my $text = '';
	my $query = sub {
		my ($label, $sql) = @_;
		my ($rc, $stdout, $stderr) = $node->psql($dbname, $sql,
			extra_params => [ '-P', 'tuples_only=off', '-P', 'footer=off' ]);
		$text .= "--- $label\n" . ($rc == 0 ? $stdout : "(failed: $stderr)") . "\n";
	};

	$query->('the load\'s backends (pg_stat_activity)', q{
		SELECT pid, state, wait_event_type, wait_event, backend_xid,
			   round(extract(epoch FROM now() - xact_start)::numeric, 1) AS xact_secs,
			   left(regexp_replace(query, '\s+', ' ', 'g'), 80) AS query
		  FROM pg_stat_activity
		 WHERE application_name = 'pgbench' OR wait_event_type = 'Lock'
		 ORDER BY pid});
	$query->('their locks not granted, and the locks others wait for (pg_locks)', q{
		SELECT l.pid, l.locktype, l.relation::regclass AS relation,
			   l.transactionid AS xid, l.classid, l.objid, l.objsubid,
			   l.mode, l.granted, pg_blocking_pids(l.pid) AS blocked_by
		  FROM pg_locks l
		 WHERE NOT l.granted
			OR l.pid IN (SELECT unnest(pg_blocking_pids(w.pid))
						   FROM pg_locks w WHERE NOT w.granted)
		 ORDER BY l.pid, l.granted});
	$query->('every lock of the load, counted (pg_locks)', q{
		SELECT l.locktype, l.relation::regclass AS relation, l.mode, l.granted,
			   count(*) AS n
		  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		 WHERE a.application_name = 'pgbench'
		 GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4});
	$query->($opt{label} // 'state', $opt{sql}) if defined $opt{sql};
	if ($opt{h})
	{
		eval { $opt{h}->pump_nb if $opt{h}->pumpable; };
		eval { $opt{h}->kill_kill; };
	}
	$text .= "--- pgbench stdout\n" . ${ $opt{out} } . "\n" if $opt{out};
	$text .= "--- pgbench stderr\n" . ${ $opt{err} } . "\n" if $opt{err};
	return $text;
}

1;
