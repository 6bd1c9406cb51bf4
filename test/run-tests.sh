#!/usr/bin/env bash
# Runs every pacelc test: the pg_regress suite (sql/, expected/), the
# isolation specs (test/specs/) and the TAP tests (test/t/), each against
# throw-away servers.  Ends with one line "N passed, N failed" and exits
# non-zero on any failure.
#
# As root (the README's command) it first installs missing Debian packages,
# builds and installs pacelc, then reruns itself as the unprivileged user
# "postgres" on a copy of the tree.  PG_CONFIG selects the installation.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export PG_CONFIG

if [ "$(id -u)" = 0 ]; then
	bash "$ROOT/test/install-deps.sh" || exit 1
	make -C "$ROOT" -s PG_CONFIG="$PG_CONFIG" clean >/dev/null
	if ! make -C "$ROOT" -s PG_CONFIG="$PG_CONFIG" all install >"$ROOT/build.log" 2>&1; then
		cat "$ROOT/build.log"; echo "build failed"; echo "0 passed, 1 failed"; exit 1
	fi
	grep -i "warning" "$ROOT/build.log" && { echo "build has warnings"; echo "0 passed, 1 failed"; exit 1; }
	WORK=$(mktemp -d /tmp/pacelc-test.XXXXXX)
	cp -a "$ROOT"/. "$WORK"/
	chown -R postgres: "$WORK"
	runuser -u postgres -- env PG_CONFIG="$PG_CONFIG" PACELC_TESTS="${PACELC_TESTS:-}" \
		PACELC_TAP="${PACELC_TAP:-}" bash "$WORK/test/run-tests.sh" "$@"
	rc=$?
	if [ $rc = 0 ] && [ -z "${PACELC_KEEP_LOGS:-}" ]; then rm -rf "$WORK"; else echo "logs kept in $WORK"; fi
	exit $rc
fi

cd "$ROOT"
BINDIR=$("$PG_CONFIG" --bindir)
PGXS_DIR=$(dirname "$(dirname "$(dirname "$("$PG_CONFIG" --pgxs)")")")
export PATH="$BINDIR:$PATH"
passed=0
failed=0
failures=()
only=${PACELC_TESTS:-}	# optional filter: regress,isolation,tap,demo
tap_glob=${PACELC_TAP:-*}	# optional TAP file pattern, e.g. '03*' 

want() { [ -z "$only" ] || [[ ",$only," == *",$1,"* ]]; }

# Counts pg_regress / pg_isolation_regress result lines.
count_regress() {
	local out=$1 ok bad
	ok=$(grep -cE '\.\.\. ok' "$out" || true)
	bad=$(grep -E '\.\.\. FAILED|\.\.\. failed' "$out" | sed -E 's/^[ a-z]*test +//; s/ +\.\.\..*//' || true)
	passed=$((passed + ok))
	if [ -n "$bad" ]; then
		failed=$((failed + $(echo "$bad" | wc -l)))
		while read -r t; do failures+=("$2/$t"); done <<<"$bad"
	fi
	if ! grep -qE '\.\.\. (ok|FAILED|failed)' "$out"; then
		failed=$((failed + 1)); failures+=("$2 (did not run)")
	fi
}

# the same lists as the Makefile's REGRESS and ISOLATION
REGRESS_TESTS=$(ls sql/*.sql 2>/dev/null | grep -v '/pacelc--' | sed 's|.*/||; s|\.sql$||' | sort | tr '\n' ' ')
ISOLATION_TESTS=$(ls test/specs/*.spec 2>/dev/null | sed 's|.*/||; s|\.spec$||' | sort | tr '\n' ' ')
mkdir -p tmp_check

if want regress && [ -n "$REGRESS_TESTS" ]; then
	echo "== pg_regress: $REGRESS_TESTS"
	"$PGXS_DIR/src/test/regress/pg_regress" --bindir="$BINDIR" --inputdir=. \
		--temp-instance=tmp_check/regress --temp-config=test/pacelc.conf \
		--outputdir=tmp_check/regress_out $REGRESS_TESTS 2>&1 | tee tmp_check/regress.log
	count_regress tmp_check/regress.log regress
	[ -f tmp_check/regress_out/regression.diffs ] && head -200 tmp_check/regress_out/regression.diffs
fi

if want isolation && [ -n "$ISOLATION_TESTS" ]; then
	echo "== isolation: $ISOLATION_TESTS"
	"$PGXS_DIR/src/test/isolation/pg_isolation_regress" --bindir="$BINDIR" \
		--inputdir=test --temp-instance=tmp_check/isolation --temp-config=test/pacelc.conf \
		--outputdir=tmp_check/isolation_out $ISOLATION_TESTS 2>&1 | tee tmp_check/isolation.log
	count_regress tmp_check/isolation.log isolation
	[ -f tmp_check/isolation_out/regression.diffs ] && head -200 tmp_check/isolation_out/regression.diffs
fi

if want tap; then
	export PERL5LIB="$PGXS_DIR/src/test/perl${PERL5LIB:+:$PERL5LIB}"
	export PG_REGRESS="$PGXS_DIR/src/test/regress/pg_regress"
	export TESTDIR="$ROOT/tmp_check/tap"
	export PACELC_ROOT="$ROOT"
	mkdir -p "$TESTDIR"
	for t in test/t/$tap_glob.pl; do
		[ -e "$t" ] || continue
		echo "== tap: $t"
		start=$(date +%s)
		if prove -v "$t" >"tmp_check/$(basename "$t").log" 2>&1; then
			passed=$((passed + 1)); echo "   ok ($(( $(date +%s) - start )) s)"
		else
			failed=$((failed + 1)); failures+=("tap/$t")
			echo "   FAILED ($(( $(date +%s) - start )) s)"; tail -60 "tmp_check/$(basename "$t").log"
		fi
	done
fi

if want demo && [ -x test/demo-check.sh ]; then
	echo "== demo (short mode)"
	if bash test/demo-check.sh >tmp_check/demo.log 2>&1; then
		passed=$((passed + 1)); echo "   ok"
	else
		failed=$((failed + 1)); failures+=("demo"); tail -60 tmp_check/demo.log
	fi
fi

for f in "${failures[@]}"; do echo "FAILED: $f"; done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
