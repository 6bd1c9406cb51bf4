#!/usr/bin/env bash
# Installs, from Debian's archive, whatever pacelc's build, tests, demo and
# benchmarks need and this machine does not have yet.  Idempotent; needs root.
#   bash test/install-deps.sh [VERSION]    # PostgreSQL VERSION, default 15
set -euo pipefail
V=${1:-15}
PKGS=(postgresql-$V postgresql-server-dev-$V postgresql-client-$V libipc-run-perl
      make gcc libc6-dev python3 python3-psycopg2 procps
      libpq-dev pgbouncer python3-psycopg)
missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "pacelc: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# node-postgres for the driver tests: Debian's nodejs and npm, unless a node
# and npm are there already (another packaging of node conflicts with them)
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq || true
	apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null ||
		echo "pacelc: could not install nodejs/npm; the node-postgres test is skipped" >&2
fi
# Debian's pgbouncer package starts a pooler on port 6432; the tests run
# their own on a free port and never use it.
# Debian's package starts a "main" cluster; pacelc never uses or touches it.
id postgres >/dev/null 2>&1 || { echo "pacelc: user postgres missing" >&2; exit 1; }
