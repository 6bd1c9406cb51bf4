#!/usr/bin/env bash
# Runs every pacelc test on PostgreSQL 15, 17 and 18: the pg_regress suite
# (sql/, expected/), the isolation specs (test/specs/, test/expected/), the
# TAP tests (test/t/) and the demo in short mode.  The suites are the
# Makefile's (REGRESS, ISOLATION, PROVE_TESTS) and run through its PGXS
# targets: "make installcheck" against a throw-away server started with
# test/pacelc.conf, "make prove_installcheck" (the TAP tests start their own).
#
#   bash test/run-tests.sh              # as root: 15, 17 and 18
#   bash test/run-tests.sh --pg 17      # one version (repeat or "15,18" for more)
#   PACELC_PG=15 bash test/run-tests.sh # the same
#
# As root (the README's command, fresh Debian 12) it installs missing Debian
# packages, then per version builds (no warnings allowed), installs and runs
# the tests as the unprivileged user "postgres" on a copy of the tree.
# PostgreSQL 15 is the host's (PG_CONFIG, default Debian's); 17 and 18 run in
# Debian trixie and sid roots cached under /var/cache/pacelc/roots (built
# with debootstrap when missing, see test/pg-root.sh), each locked while in
# use; there it first builds Citus from ../shared/vendor into the root when
# missing (test/citus-build.sh), for test/t/050_citus.pl.  Prints "PGnn: N passed, N failed" per version, then "N passed, N
# failed" alone on the last line; exits non-zero on any failure, including a
# version that could not be set up.
#
# Other knobs: PACELC_TESTS=regress,isolation,tap,demo (a subset),
# PACELC_TAP='03*' (TAP files), PACELC_KEEP_LOGS=1 (keep the work copies).
# As an unprivileged user it tests the PostgreSQL that PG_CONFIG names only,
# with pacelc already installed there.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HOST_PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}

mode=all
versions=${PACELC_PG:-}
while [ $# -gt 0 ]; do
	case "$1" in
		--pg) versions="$versions,${2:-}"; shift 2 ;;
		--pg=*) versions="$versions,${1#--pg=}"; shift ;;
		--one) mode=one; shift ;;	# internal: build, install, test PG_CONFIG's version
		-h|--help) sed -n '2,27p' "$0"; exit 0 ;;
		*) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
	esac
done
versions=$(echo "$versions" | tr ', ' '\n\n' | grep -v '^$' | sort -un | tr '\n' ' ')
[ -n "$versions" ] || versions="15 17 18"
[ "$(id -u)" = 0 ] || mode=tests

# ---------------------------------------------------------------------------
# As root, one version: install what is missing, build, install, then run
# the tests as user postgres on a copy of the tree.
if [ "$mode" = one ]; then
	PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
	export PG_CONFIG
	v=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
	bash "$ROOT/test/install-deps.sh" "$v" || { echo "0 passed, 1 failed"; exit 1; }
	make -C "$ROOT" -s PG_CONFIG="$PG_CONFIG" clean >/dev/null
	if ! make -C "$ROOT" -s PG_CONFIG="$PG_CONFIG" all install >"$ROOT/build.log" 2>&1; then
		cat "$ROOT/build.log"; echo "build failed"; echo "0 passed, 1 failed"; exit 1
	fi
	if grep -i "warning" "$ROOT/build.log"; then
		echo "build has warnings"; echo "0 passed, 1 failed"; exit 1
	fi
	if ! bash "$ROOT/test/callgraph.sh" "$ROOT" >/dev/null; then
		echo "0 passed, 1 failed"; exit 1
	fi
	WORK=$(mktemp -d "${TMPDIR:-/tmp}"/pacelc-test.XXXXXX)
	cp -a "$ROOT"/. "$WORK"/
	chown -R postgres: "$WORK"
	runuser -u postgres -- env PG_CONFIG="$PG_CONFIG" PACELC_TESTS="${PACELC_TESTS:-}" \
		PACELC_TAP="${PACELC_TAP:-}" PACELC_CITUS_REQUIRED="${PACELC_CITUS_REQUIRED:-}" \
		TMPDIR="$WORK" bash "$WORK/test/run-tests.sh"
	rc=$?
	if [ $rc = 0 ] && [ -z "${PACELC_KEEP_LOGS:-}" ]; then rm -rf "$WORK"; else echo "logs kept in $WORK"; fi
	exit $rc
fi

# ---------------------------------------------------------------------------
# As root: every version asked for, one after the other.
if [ "$mode" = all ]; then
	total_p=0
	total_f=0
	summary=()
	LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}"/pacelc-run.XXXXXX)
	for v in $versions; do
		log="$LOGDIR/pg$v.log"
		start=$(date +%s)
		if [ "$v" = 15 ]; then
			echo "=== PostgreSQL 15 (this host, $HOST_PG_CONFIG)"
			PG_CONFIG="$HOST_PG_CONFIG" bash "$ROOT/test/run-tests.sh" --one 2>&1 | tee "$log"
			rc=${PIPESTATUS[0]}
		else
			(
				lock=$(bash "$ROOT/test/pg-root.sh" lockfile "$v") || exit 1
				exec 9>"$lock"
				if ! flock -w 3600 9; then echo "pacelc: could not lock $lock"; exit 1; fi
				r=$(bash "$ROOT/test/pg-root.sh" ensure "$v") || { echo "PostgreSQL $v: no Debian root, setup failed"; exit 1; }
				echo "=== PostgreSQL $v (Debian root $r)"
				# Citus for test/t/050_citus.pl (built once per root).  Once
				# built, the test fails rather than skips if Citus is missing;
				# without the vendored source or a working build it skips
				# and says why.
				citus_required=
				if [ -z "${PACELC_TESTS:-}" ] || [[ ",${PACELC_TESTS}," == *",tap,"* ]]; then
					if bash "$ROOT/test/citus-build.sh" "$v"; then
						citus_required=1
					else
						echo "pacelc: Citus could not be built for PostgreSQL $v: test/t/050_citus.pl skips"
					fi
				fi
				src=$(mktemp -d "$r/tmp/pacelc-src.XXXXXX")
				tar -C "$ROOT" --exclude=./.git --exclude=./tmp_check --exclude=./tmp_run \
					--exclude=./build.log -cf - . | tar -C "$src" -xf -
				bash "$ROOT/test/pg-root.sh" run "$v" env PG_CONFIG="/usr/lib/postgresql/$v/bin/pg_config" \
					PACELC_TESTS="${PACELC_TESTS:-}" PACELC_TAP="${PACELC_TAP:-}" \
					PACELC_KEEP_LOGS="${PACELC_KEEP_LOGS:-}" PACELC_CITUS_REQUIRED="$citus_required" \
					bash "${src#"$r"}/test/run-tests.sh" --one
				rc=$?
				rm -rf "$src"
				[ $rc = 0 ] || echo "(paths above are inside the root $r)"
				exit $rc
			) 2>&1 | tee "$log"
			rc=${PIPESTATUS[0]}
		fi
		line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -1)
		if [ -n "$line" ]; then
			p=${line%% passed*}
			f=${line#*passed, }
			f=${f%% failed}
		else
			p=0; f=1; line="0 passed, 1 failed (setup failed, see above)"
		fi
		if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; line="$p passed, 1 failed (exit status $rc)"; fi
		total_p=$((total_p + p))
		total_f=$((total_f + f))
		summary+=("PG$v: $line ($(( $(date +%s) - start )) s)")
	done
	if [ -n "${PACELC_KEEP_LOGS:-}" ] || [ "$total_f" != 0 ]; then
		echo "output per version kept in $LOGDIR"
	else
		rm -rf "$LOGDIR"
	fi
	echo
	for s in "${summary[@]}"; do echo "$s"; done
	echo "$total_p passed, $total_f failed"
	[ "$total_f" = 0 ] && [ "$total_p" -gt 0 ]
	exit
fi

# ---------------------------------------------------------------------------
# As user postgres (or any unprivileged user): the tests, through the PGXS
# targets, for the PostgreSQL that PG_CONFIG names.
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export PG_CONFIG
cd "$ROOT"
BINDIR=$("$PG_CONFIG" --bindir)
export PATH="$BINDIR:$PATH"
passed=0
failed=0
failures=()
only=${PACELC_TESTS:-}	# optional filter: regress,isolation,tap,demo
tap_glob=${PACELC_TAP:-*}	# optional TAP file pattern, e.g. '03*'

want() { [ -z "$only" ] || [[ ",$only," == *",$1,"* ]]; }
mk() { make -s --no-print-directory PG_CONFIG="$PG_CONFIG" "$@"; }

# Counts pg_regress / pg_isolation_regress result lines: "test x ... ok"
# up to PostgreSQL 15, TAP-style "ok 1 - x" / "not ok 2 - x" from 16 on.
count_regress() {
	local out=$1 ok bad
	ok=$(grep -cE '\.\.\. ok|^ok [0-9]+ ' "$out" || true)
	bad=$( (grep -E '\.\.\. FAILED|\.\.\. failed' "$out" | sed -E 's/^[ a-z]*test +//; s/^ +//; s/ +\.\.\..*//'
		grep -E '^not ok [0-9]+ ' "$out" | sed -E 's/^not ok [0-9]+ +- +//; s/ +[0-9]+ ms.*//; s/ .*//') || true)
	passed=$((passed + ok))
	if [ -n "$bad" ]; then
		failed=$((failed + $(echo "$bad" | wc -l)))
		while read -r t; do failures+=("$2/$t"); done <<<"$bad"
	fi
	if [ "$ok" = 0 ] && [ -z "$bad" ]; then
		failed=$((failed + 1)); failures+=("$2 (did not run)")
	fi
}

REGRESS_TESTS=$(mk print-REGRESS)
ISOLATION_TESTS=$(mk print-ISOLATION)
rm -rf tmp_check tmp_run
mkdir -p tmp_run

# A throw-away server with the documented settings (test/pacelc.conf), on a
# unix socket in its own directory, for "make installcheck".
SERVER=""
stop_server() {
	[ -n "$SERVER" ] && pg_ctl -D "$SERVER/data" -m immediate -w stop >/dev/null 2>&1
	SERVER=""
}
start_server() {
	SERVER=$(mktemp -d "${TMPDIR:-/tmp}"/pacelc-pg.XXXXXX)
	initdb -D "$SERVER/data" -A trust --no-sync >"$ROOT/tmp_run/initdb.log" 2>&1 || return 1
	cat test/pacelc.conf >>"$SERVER/data/postgresql.conf"
	printf "listen_addresses = ''\nunix_socket_directories = '%s'\nfsync = off\n" "$SERVER" \
		>>"$SERVER/data/postgresql.conf"
	pg_ctl -D "$SERVER/data" -l "$ROOT/tmp_run/installcheck-server.log" -w start >/dev/null || return 1
	export PGHOST="$SERVER" PGPORT=5432
}
trap 'stop_server; [ -n "${SERVER_DIR:-}" ] && rm -rf "$SERVER_DIR"' EXIT

if { want regress && [ -n "$REGRESS_TESTS" ]; } || { want isolation && [ -n "$ISOLATION_TESTS" ]; }; then
	if ! start_server; then
		echo "could not start a server for make installcheck"; tail -20 tmp_run/*.log
		failed=$((failed + 1)); failures+=("installcheck server")
	fi
	SERVER_DIR=$SERVER
fi

if [ -n "$SERVER" ] && want regress && [ -n "$REGRESS_TESTS" ]; then
	# twice: the second run proves the suite leaves nothing behind that breaks it
	for run in 1 2; do
		echo "== make installcheck (pg_regress, run $run): $REGRESS_TESTS"
		mk installcheck ISOLATION= TAP_TESTS= 2>&1 | tee tmp_run/regress$run.log
		count_regress tmp_run/regress$run.log "regress$run"
		if [ -f regression.diffs ]; then
			head -200 regression.diffs; mv regression.diffs "tmp_run/regress$run.diffs"
		fi
	done
	left=$(psql -X -At -d postgres -c "SELECT string_agg(rolname, ', ') FROM pg_roles WHERE rolname ~ '^regress_'")
	if [ -n "$left" ]; then
		echo "roles left behind by the regression suite: $left"
		failed=$((failed + 1)); failures+=("regress (roles left behind: $left)")
	else
		passed=$((passed + 1)); echo "== no regress_ roles left behind: ok"
	fi
fi

if [ -n "$SERVER" ] && want isolation && [ -n "$ISOLATION_TESTS" ]; then
	echo "== make installcheck (isolation): $ISOLATION_TESTS"
	mk installcheck REGRESS= TAP_TESTS= 2>&1 | tee tmp_run/isolation.log
	count_regress tmp_run/isolation.log isolation
	[ -f output_iso/regression.diffs ] && head -200 output_iso/regression.diffs
fi
stop_server

if want tap; then
	unset PGHOST PGPORT
	for t in test/t/$tap_glob.pl; do
		[ -e "$t" ] || continue
		echo "== make prove_installcheck PROVE_TESTS=$t"
		start=$(date +%s)
		name=$(basename "$t" .pl)
		if mk prove_installcheck PROVE_TESTS="$t" >"tmp_run/$name.log" 2>&1; then
			passed=$((passed + 1)); echo "   ok ($(( $(date +%s) - start )) s)"
		else
			failed=$((failed + 1)); failures+=("tap/$t")
			echo "   FAILED ($(( $(date +%s) - start )) s)"; tail -40 "tmp_run/$name.log"
			for l in tmp_check/log/regress_log_*; do
				[ -e "$l" ] && { echo "--- $l (tail)"; tail -60 "$l"; }
			done
		fi
		# prove_installcheck starts from an empty tmp_check: keep this file's logs
		[ -d tmp_check ] && mv tmp_check "tmp_run/$name"
	done
fi

if want demo && [ -x test/demo-check.sh ]; then
	echo "== demo (short mode)"
	if bash test/demo-check.sh >tmp_run/demo.log 2>&1; then
		passed=$((passed + 1)); echo "   ok"
	else
		failed=$((failed + 1)); failures+=("demo"); tail -60 tmp_run/demo.log
	fi
fi

for f in "${failures[@]}"; do echo "FAILED: $f"; done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
