# Helpers shared by pacelc's TAP tests.
package PacelcTest;

use strict;
use warnings;
use Exporter 'import';
use IPC::Run;

our @EXPORT = qw(start_pgbench write_file);

# Writes a file (a pgbench script, say) and returns its path.
sub write_file
{
	my ($path, $content) = @_;
	open my $fh, '>', $path or die "could not write $path: $!";
	print $fh $content;
	close $fh;
	return $path;
}

# Starts pgbench in the background against a node, with application_name
# "pgbench" so that tests can find (and kill) its backends.  Its clients may
# die with the server; callers only wait for it with ->finish.
sub start_pgbench
{
	my ($node, $script, %opt) = @_;
	my ($out, $err) = ('', '');
	local $ENV{PGAPPNAME} = 'pgbench';
	return IPC::Run::start(
		[
			'pgbench', '-n', '-c', $opt{clients} // 16, '-j', 2,
			'-T', $opt{seconds} // 5, '-f', $script,
			'-h', $node->host, '-p', $node->port, $opt{dbname} // 'postgres'
		],
		'>', \$out, '2>', \$err);
}

1;
