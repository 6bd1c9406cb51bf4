#!/usr/bin/env bash
# Prints which C file of pacelc calls which (from the built objects, with
# nm) and fails if the calls go round in a circle, or if the library
# exports a symbol that is not pacelc_-prefixed (besides what PostgreSQL
# looks up: _PG_init, Pg_magic_func, pg_finfo_*), or if a C function that
# the update scripts leave without a SET search_path does not pin it in C
# (PACELC_OWNER_ENTRY).  Run after "make".
#   bash test/callgraph.sh [DIR]      # DIR: the built tree (default: this one)
set -euo pipefail
DIR=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$DIR"
edges=$(mktemp)
trap 'rm -f "$edges"' EXIT
for o in src/*.o; do
	for g in src/*.o; do
		[ "$o" = "$g" ] && continue
		if comm -12 <(nm -u "$o" | awk '$2 ~ /^pacelc_/ {print $2}' | sort -u) \
			<(nm --defined-only -g "$g" | awk '{print $3}' | sort -u) | grep -q .; then
			echo "$(basename "$o" .o) $(basename "$g" .o)"
		fi
	done
done >"$edges"
awk '{a[$1] = a[$1] " " $2} END {for (k in a) print k ".c ->" a[k]}' "$edges" | sort
if ! tsort "$edges" >/dev/null 2>&1; then
	echo "callgraph: the C files call one another in a circle:" >&2
	tsort "$edges" 2>&1 >/dev/null | sed 's/^/  /' >&2
	exit 1
fi
bad=$(nm -D --defined-only pacelc.so | awk '{print $3}' |
	grep -v -E '^(pacelc_|pg_finfo_pacelc_|_PG_init$|Pg_magic_func$)' || true)
if [ -n "$bad" ]; then
	echo "callgraph: exported symbols without the pacelc_ prefix:" $bad >&2
	exit 1
fi
# the C functions that pin_functions() leaves without a SET clause must pin
# their search path in C: each must be a PACELC_OWNER_ENTRY
for sym in $(grep -h -A5 'FUNCTION pacelc_private.owner_entry_symbols' sql/pacelc--*.sql |
	grep -o "'pacelc_[a-z_]*'" | tr -d "'" | sort -u); do
	if ! grep -Eq "^PACELC_OWNER_ENTRY(_LAZY)?\($sym," src/*.c; then
		echo "callgraph: $sym loses its SET search_path (owner_entry_symbols()) but is no PACELC_OWNER_ENTRY" >&2
		exit 1
	fi
done
echo "callgraph: no circle, every exported symbol prefixed, every owner entry pins its path"
