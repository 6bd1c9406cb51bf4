#!/usr/bin/env bash
# Installs, from Debian's archive, whatever pacelc's build, tests, demo and
# benchmarks need and this machine does not have yet.  Idempotent; needs root.
#   bash test/install-deps.sh [VERSION]    # PostgreSQL VERSION, default 15
set -euo pipefail
V=${1:-15}
PKGS=(postgresql-$V postgresql-server-dev-$V postgresql-client-$V libipc-run-perl
      make gcc libc6-dev python3 python3-psycopg2 procps)
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
# Debian's package starts a "main" cluster; pacelc never uses or touches it.
id postgres >/dev/null 2>&1 || { echo "pacelc: user postgres missing" >&2; exit 1; }
