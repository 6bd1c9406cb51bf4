#!/usr/bin/env bash
# Prints which C file of pacelc calls which (from the built objects, with
# nm) and fails if the calls go round in a circle, or if the library
# exports a symbol that is not pacelc_-prefixed (besides what PostgreSQL
# looks up: _PG_init, Pg_magic_func, pg_finfo_*).  Run after "make".
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
echo "callgraph: no circle, every exported symbol prefixed"
