# The in-flight journal in a pool of two: an attempt that died with the
# server must be counted before any worker runs its message again.
#
# After a crash restart the first worker starts the second before it
# counts the files, and the second takes the lock of its own file before
# it counts it; a worker that finds a file locked leaves it to its owner
# and goes on to take batches.  If the owner's count is delayed (its
# UPDATE waits behind a lock, fails, is retried a second later), the other
# worker runs the message with the crashed attempt uncounted, and if that
# run crashes too, both files list the same attempts: two crashes, one
# count.  Under load this happened by itself in 3 of 96 crash restarts;
# here the count is delayed on purpose: a trigger fails the counting
# UPDATE while a committed row in "gate" says so.  While it does, the
# message must not run; once the gate is open, the attempt is counted once
# and the message runs again.
use strict;
use warnings FATAL => 'all';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use PacelcTest;
use Time::HiRes qw(time usleep);

my $node = pacelc_node('inflightrace', conf => qq{
pacelc.launcher_naptime = 1s
pacelc.worker_naptime = 1s
pacelc.handler_timeout = 30s
pacelc.workers_per_database = 2
restart_after_crash = on
log_statement = none
});
$node->safe_psql('postgres', 'CREATE EXTENSION pacelc;' . shop_role_sql(login => 0) . q{
	CREATE FUNCTION sleeper(p jsonb) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		RAISE LOG 'inflight-race: handler starts';
		PERFORM pg_sleep(30);
	END $$;
	-- fails the worker's counting of unfinished attempts while the gate is shut
	CREATE TABLE public.gate (shut bool);
	CREATE FUNCTION public.delay_count() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF EXISTS (SELECT 1 FROM public.gate)
		   AND (SELECT a.query FROM pg_catalog.pg_stat_activity a WHERE a.pid = pg_catalog.pg_backend_pid())
			   = 'pacelc: counting unfinished attempts' THEN
			RAISE EXCEPTION 'test: the count is delayed';
		END IF;
		RETURN NEW;
	END $$;
	CREATE TRIGGER delay_count BEFORE UPDATE ON pacelc.messages
		FOR EACH ROW EXECUTE FUNCTION public.delay_count();
	SET ROLE regress_pacelc_shop;
	SELECT pacelc.create_queue('poison', 'sleeper(jsonb)', max_attempts => 10, backoff => '1 ms');
});


# waits at most $secs seconds for the server log past $offset to match $re
sub log_shows
{
	my ($re, $offset, $secs) = @_;
	my $t0 = time;
	while (time - $t0 < $secs)
	{
		return 1 if slurp_file($node->logfile, $offset) =~ $re;
		usleep(50_000);
	}
	return 0;
}

sub starts
{
	my @m = slurp_file($node->logfile) =~ /inflight-race: handler starts/g;
	return scalar @m;
}

ok((wait_for_value($node, q{SELECT count(*) FROM pg_stat_activity
				WHERE backend_type = 'pacelc worker' AND datname = 'postgres'}, '2', 20))[0],
	'a pool of two');
my $id = $node->safe_psql('postgres', q{
	SET ROLE regress_pacelc_shop;
	SELECT pacelc.enqueue('poison', '{}');
});

my $last = 0;
my $failed_round = 0;
for my $round (1 .. 3)
{
	# the handler runs (again), its message showing the crashes so far
	my ($seen, $row) = wait_for_value($node, qq{
		SELECT a.pid || ':' || m.attempts FROM pacelc.messages m,
			   (SELECT pid FROM pg_stat_activity
				 WHERE backend_type = 'pacelc worker' AND wait_event = 'PgSleep' AND pid <> $last) a
		 WHERE m.id = $id}, undef, 20);
	ok(defined $seen, "round $round: the handler runs");
	unless (defined $seen) { $failed_round = $round; last; }
	my ($pid, $attempts) = split /:/, $row;
	is($attempts, $round - 1, "round $round: the message shows the $attempts crash(es) so far");

	# delay the count past the crash
	$node->safe_psql('postgres', q{INSERT INTO public.gate VALUES (true)});
	my $before = starts();
	my $offset = -s $node->logfile;
	kill 'KILL', $pid;
	$last = $pid;
	log_shows(qr/all server processes terminated; reinitializing/, $offset, 20);
	ok((wait_for_value($node, q{SELECT count(*) FROM pg_stat_activity
					WHERE backend_type = 'pacelc worker' AND datname = 'postgres'}, '2', 20))[0],
		"round $round: both workers are back");

	ok(log_shows(qr/test: the count is delayed/, $offset, 10), "round $round: the count fails (delayed on purpose)");
	# for three seconds with both workers up, the message must not run
	my $t0 = time;
	my $ran = '';
	while (time - $t0 < 3)
	{
		my ($rc, $o) = $node->psql('postgres', q{
			SELECT pid FROM pg_stat_activity WHERE backend_type = 'pacelc worker' AND wait_event = 'PgSleep'});
		if ($rc == 0 && $o ne '') { $ran = $o; last; }
		usleep(50_000);
	}
	is($ran, '', "round $round: while its count is delayed the message does not run");
	is(starts() - $before, 0, "round $round: its handler did not start");
	$node->safe_psql('postgres', q{DELETE FROM public.gate});
	if ($ran ne '')
	{
		$failed_round = $round;
		diag "round $round: the handler ran with the crashed attempt uncounted (worker $ran); "
		  . 'message: ' . $node->safe_psql('postgres', qq{
			SELECT state || ', attempts ' || attempts FROM pacelc.messages WHERE id = $id});
		last;
	}
}
SKIP:
{
	skip "round $failed_round failed", 2 if $failed_round;
	ok((wait_for_value($node, qq{SELECT count(*) FROM pacelc.message_errors WHERE message_id = $id}, '3', 20))[0],
		'three crashes, three attempts recorded');
	is($node->safe_psql('postgres', qq{
		SELECT string_agg(attempt || '/' || sqlstate, ',' ORDER BY attempt)
		  FROM pacelc.message_errors WHERE message_id = $id}),
		'1/57014,2/57014,3/57014', 'each once, as not finished');
}

$node->stop('immediate');
done_testing();
