# A libpq session for the LSN-token tests: test/t/lsn_driver.c, built once
# per test run with the server's libpq, driven one command line at a time
# (see the comment at the top of lsn_driver.c).
package LsnDriver;

use strict;
use Cwd ();
use File::Basename ();
use warnings FATAL => 'all';
use IPC::Run;
use Time::HiRes qw(usleep);

my $binary;

# Builds the driver (once) and returns its path.
sub build
{
	return $binary if $binary;
	my $dir = $PostgreSQL::Test::Utils::tmp_check // '/tmp';
	my $src = File::Basename::dirname(Cwd::abs_path(__FILE__)) . "/../t/lsn_driver.c";
	my $inc = `pg_config --includedir`;
	my $lib = `pg_config --libdir`;
	chomp($inc, $lib);
	# a private server tree may lack the client headers: use the system's
	$inc = '/usr/include/postgresql' unless -e "$inc/libpq-fe.h";
	my $out = "$dir/lsn_driver";
	my @cmd = ('cc', '-O1', '-o', $out, $src, "-I$inc", "-L$lib", '-lpq');
	system(@cmd) == 0 or die "could not build lsn_driver: @cmd";
	$binary = $out;
	return $binary;
}

# Connects; returns a driver object.
sub new
{
	my ($class, $connstr) = @_;
	my $self = bless { in => '', out => '', err => '' }, $class;
	$self->{h} = IPC::Run::start([ build(), $connstr ],
		'<', \$self->{in}, '>', \$self->{out}, '2>', \$self->{err},
		IPC::Run::timeout(180));
	$self->{h}->pump until $self->{out} =~ /READY\n/ || !$self->{h}->pumpable;
	die "lsn_driver did not start: $self->{err}" unless $self->{out} =~ /READY\n/;
	$self->{out} = '';
	return $self;
}

# Sends a command without waiting for its answer.
sub send
{
	my ($self, @fields) = @_;
	$self->{in} .= join("\t", @fields) . "\n";
	$self->{h}->pump_nb;
	return;
}

# Waits for the answer of the command sent last.
sub answer
{
	my ($self) = @_;
	$self->{h}->pump until $self->{out} =~ /\n/;
	$self->{out} =~ s/^([^\n]*)\n//;
	return $1;
}

# Sends a command and returns its answer line.
sub cmd
{
	my ($self, @fields) = @_;
	$self->send(@fields);
	return $self->answer;
}

sub quit
{
	my ($self) = @_;
	$self->{in} .= "QUIT\n";
	$self->{h}->finish;
	return;
}

1;
