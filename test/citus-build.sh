#!/usr/bin/env bash
# Builds Citus from the vendored source into the Debian root of a PostgreSQL
# version (17 or 18), for test/t/050_citus.pl and test/bench/citus_bench.sh.
# Needs root; the caller holds the root's lock (test/run-tests.sh does).
#
#   bash test/citus-build.sh VERSION
#
# The source is ../shared/vendor/citus-X.Y.Z.tar.gz next to the clone (or
# $PACELC_CITUS_TARBALL).  Cached: nothing is done when the root already has
# citus.so built from that very tarball (a marker next to it records the
# tarball's sha256).  Otherwise the build packages the vendor README names
# are installed in the root with apt-get, and Citus is configured, built and
# installed there (about 90 s on 2 cores).  Citus supports PostgreSQL 16 to
# 18; for another version this prints why and exits 0 (the test skips).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
v=${1:?usage: citus-build.sh VERSION}

case "$v" in
	16|17|18) ;;
	*) echo "pacelc: Citus does not support PostgreSQL $v: not built"; exit 0 ;;
esac

tarball=${PACELC_CITUS_TARBALL:-}
if [ -z "$tarball" ]; then
	for d in "$ROOT/../shared/vendor" "$ROOT/../../shared/vendor" /work/shared/vendor; do
		t=$(ls "$d"/citus-*.tar.gz 2>/dev/null | sort -V | tail -1 || true)
		[ -n "$t" ] && { tarball=$t; break; }
	done
fi
if [ -z "$tarball" ] || [ ! -f "$tarball" ]; then
	echo "pacelc: no Citus source (../shared/vendor/citus-*.tar.gz next to the clone, or PACELC_CITUS_TARBALL): Citus not built" >&2
	exit 1
fi
sum=$(sha256sum "$tarball" | cut -d' ' -f1)
want="$(basename "$tarball") $sum"

r=$(bash "$HERE/pg-root.sh" ensure "$v")
lib="$r/usr/lib/postgresql/$v/lib"
marker="$lib/citus.so.pacelc-source"
if [ -f "$lib/citus.so" ] && [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ]; then
	echo "pacelc: Citus already built in $r ($want)"
	exit 0
fi

echo "pacelc: building Citus from $(basename "$tarball") into $r (PostgreSQL $v; about 90 s)"
deps="libcurl4-openssl-dev liblz4-dev libzstd-dev libkrb5-dev libssl-dev libicu-dev
libreadline-dev libxml2-dev libxslt1-dev libselinux1-dev libpam0g-dev zlib1g-dev
flex bison pkg-config"
missing=""
for p in $deps; do
	chroot "$r" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "pacelc: installing in the root:$missing"
	# one by one when all at once fails (Debian sid sometimes cannot install
	# one of them for a while): the build says whether it was needed
	bash "$HERE/pg-root.sh" run "$v" sh -c "apt-get update -qq &&
		{ apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1 ||
		  for p in $missing; do apt-get install -y -qq --no-install-recommends \$p >/dev/null 2>&1 ||
			echo \"pacelc: could not install \$p in the root\"; done; }; apt-get clean"
fi

build=$(mktemp -d "$r/tmp/citus-build.XXXXXX")
trap 'rm -rf "$build"' EXIT
tar -C "$build" -xzf "$tarball"
src=$(ls -d "$build"/citus-* | head -1)
log="$build/build.log"
if ! bash "$HERE/pg-root.sh" run "$v" sh -c "cd '${src#"$r"}' &&
		./configure PG_CONFIG=/usr/lib/postgresql/$v/bin/pg_config &&
		make -j2 && make install" >"$log" 2>&1; then
	tail -40 "$log" >&2
	echo "pacelc: building Citus for PostgreSQL $v failed" >&2
	exit 1
fi
echo "$want" >"$marker"
echo "pacelc: Citus installed in $r"
