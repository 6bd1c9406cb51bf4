# Sourced by the benchmarks, first thing:
#   . "$(dirname "$0")/lib.sh"
#   bench_start "VAR ..." "$@"      # the variables to pass on as postgres
# then bench_options (--quick, --help), bench_dir, bench_initdb,
# bench_pg_start as needed.
set -euo pipefail
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export PG_CONFIG
BIN=$("$PG_CONFIG" --bindir)

# bench_start "VAR ..." [ARGS ...]
#   As root: installs what is missing from Debian's archive (plus the
#   packages in BENCH_EXTRA_DEBS, which may fail: the benchmark then skips
#   what needs them), builds and installs pacelc, and reruns the benchmark
#   as user postgres from a copy of test/bench that postgres can read,
#   passing on PG_CONFIG and those of the named variables that are set.
#   Exits with the benchmark's status.  As any other user: returns.
bench_start() {
	local vars=$1 root copy v rc=0
	local envs=()
	shift
	[ "$(id -u)" = 0 ] || return 0
	root=$(cd "$(dirname "$0")/../.." && pwd)
	bash "$root/test/install-deps.sh"
	if [ -n "${BENCH_EXTRA_DEBS:-}" ]; then
		# shellcheck disable=SC2086
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			$BENCH_EXTRA_DEBS >/dev/null ||
			echo "pacelc: could not install $BENCH_EXTRA_DEBS; the benchmark skips what needs it" >&2
	fi
	make -C "$root" -s PG_CONFIG="$PG_CONFIG" install >/dev/null
	copy=$(mktemp -d /tmp/pacelc-bench-src.XXXXXX)
	cp -a "$root/test/bench" "$copy/"
	chown -R postgres: "$copy"
	for v in PG_CONFIG $vars; do
		[ -n "${!v:-}" ] && envs+=("$v=${!v}")
	done
	runuser -u postgres -- env "${envs[@]}" bash "$copy/bench/$(basename "$0")" "$@" || rc=$?
	rm -rf "$copy"
	exit $rc
}

# bench_options [ARGS ...]: --quick sets QUICK=1; --help prints the
# benchmark's header comment and exits.
bench_options() {
	local a
	QUICK=0
	for a in "$@"; do
		case $a in
			--quick) QUICK=1 ;;
			-h|--help) sed -n '2,/^[^#]/{/^#/p}' "$0"; exit 0 ;;
			*) echo "unknown argument: $a" >&2; exit 2 ;;
		esac
	done
}

# bench_dir NAME: DIR, a new directory /tmp/pacelc-NAME.XXXXXX; at exit
# (also on Ctrl-C or kill) the background jobs are killed, every server
# in DIR is stopped and DIR is removed.
bench_dir() {
	DIR=$(mktemp -d "/tmp/pacelc-$1.XXXXXX")
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
}

bench_cleanup() {
	local d
	jobs -p | xargs -r kill 2>/dev/null || true
	for d in "$DIR"/*/; do
		[ -f "$d/postmaster.pid" ] && "$BIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
	done
	rm -rf "$DIR"
}

# bench_initdb NAME PORT [INITDB ARGS ...]: a cluster in $DIR/NAME that
# listens only on a unix socket in $DIR, on PORT; more postgresql.conf
# lines come on standard input.
bench_initdb() {
	local name=$1 port=$2
	shift 2
	"$BIN/initdb" -D "$DIR/$name" -A trust "$@" >/dev/null
	{
		printf "listen_addresses = ''\nunix_socket_directories = '%s'\nport = %s\n" "$DIR" "$port"
		cat
	} >>"$DIR/$name/postgresql.conf"
}

# bench_pg_start NAME PORT: starts the cluster $DIR/NAME (log in
# $DIR/NAME.log) and points libpq at it (PGHOST, PGPORT, PGUSER=postgres,
# PGDATABASE=postgres); PSQL is a psql command line that stops at the
# first error.
bench_pg_start() {
	"$BIN/pg_ctl" -D "$DIR/$1" -l "$DIR/$1.log" -w start >/dev/null
	export PGHOST=$DIR PGPORT=$2 PGUSER=postgres PGDATABASE=postgres
	PSQL=("$BIN/psql" -X -q -At -v ON_ERROR_STOP=1)
}

HZ=$(getconf CLK_TCK)

# CPU time (clock ticks) the server of data directory $1 has used so far:
# the postmaster's own and its reaped children's (the backends of finished
# runs), plus its live children's (backends, background workers).  Less
# sensitive than a rate to what else runs on the machine.
bench_server_ticks() {
	local pm t p
	pm=$(head -1 "$1/postmaster.pid")
	t=$(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$pm/stat")
	for p in $(pgrep -P "$pm"); do
		t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "$t"
}
