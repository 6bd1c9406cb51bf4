# Sourced by the benchmarks (after setting ROOT and PG_CONFIG).
#
# bench_as_postgres SCRIPT "VAR ..." [ARGS ...]
#   As root: installs what is missing from Debian's archive (plus the
#   packages in BENCH_EXTRA_DEBS, which may fail: the benchmark then skips
#   what needs them), builds and installs pacelc, and reruns SCRIPT as user
#   postgres from a copy of test/bench that postgres can read, passing on
#   PG_CONFIG and those of the named variables that are set.  Exits with the
#   benchmark's status.
bench_as_postgres() {
	local script=$1 vars=$2 copy v rc=0
	local envs=()
	shift 2
	bash "$ROOT/test/install-deps.sh"
	if [ -n "${BENCH_EXTRA_DEBS:-}" ]; then
		# shellcheck disable=SC2086
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			$BENCH_EXTRA_DEBS >/dev/null ||
			echo "pacelc: could not install $BENCH_EXTRA_DEBS; the benchmark skips what needs it" >&2
	fi
	make -C "$ROOT" -s PG_CONFIG="$PG_CONFIG" install >/dev/null
	copy=$(mktemp -d /tmp/pacelc-bench-src.XXXXXX)
	cp -a "$ROOT/test/bench" "$copy/"
	chown -R postgres: "$copy"
	for v in PG_CONFIG $vars; do
		[ -n "${!v:-}" ] && envs+=("$v=${!v}")
	done
	runuser -u postgres -- env "${envs[@]}" bash "$copy/bench/$(basename "$script")" "$@" || rc=$?
	rm -rf "$copy"
	exit $rc
}
