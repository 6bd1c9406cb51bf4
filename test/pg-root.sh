#!/usr/bin/env bash
# Debian roots for testing pacelc on PostgreSQL versions the host does not
# package: 17 (Debian 13 "trixie") and 18 (Debian "sid").  Needs root.
#
#   bash test/pg-root.sh ensure VERSION      # print the root's path, building it if needed
#   bash test/pg-root.sh run VERSION CMD...  # run CMD in the root (proc/dev mounted)
#
# Roots are cached outside the clone, under $PACELC_ROOTS (default
# /var/cache/pacelc/roots), one per Debian suite.  A root is built with
# debootstrap (minbase) into a temporary directory next to it and renamed
# into place only when complete, so an interrupted build leaves no half root;
# a root that is missing or fails its check is rebuilt.  The mirror is the
# one the host's apt sources name.  Services never start in a root
# (policy-rc.d exits 101) and no "main" cluster is created.  Callers hold
# an exclusive flock on "$PACELC_ROOTS/SUITE.lock" while they use a root
# (test/run-tests.sh does).
set -euo pipefail

ROOTS=${PACELC_ROOTS:-/var/cache/pacelc/roots}

suite_of() {
	case "$1" in
		17) echo trixie ;;
		18) echo sid ;;
		*) echo "pacelc: no Debian root for PostgreSQL $1 (15 runs on the host)" >&2; return 1 ;;
	esac
}

packages_of() {
	local v=$1
	echo "postgresql-$v postgresql-server-dev-$v postgresql-client-$v libipc-run-perl perl" \
		"make gcc libc6-dev python3 python3-psycopg2 procps util-linux"
}

# The Debian archive the host's apt sources name (one-line or deb822 format;
# the first that is not the security archive), or $PACELC_MIRROR.
host_mirror() {
	local m
	m=${PACELC_MIRROR:-$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
		/etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v '^\s*#' |
		grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v -- '-security' | head -1 | tr -d ' ' || true)}
	if [ -z "$m" ]; then
		echo "pacelc: no Debian mirror in /etc/apt/sources.list*; set PACELC_MIRROR" >&2
		return 1
	fi
	echo "$m"
}

MOUNTED=()
umount_all() {
	local i
	for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
		umount "${MOUNTED[$i]}" 2>/dev/null || umount -l "${MOUNTED[$i]}" 2>/dev/null || true
	done
	MOUNTED=()
}

mount_all() {
	local r=$1
	mkdir -p "$r/proc" "$r/dev"
	mount -t proc proc "$r/proc" && MOUNTED+=("$r/proc")
	mount --bind /dev "$r/dev" && MOUNTED+=("$r/dev")
	if mountpoint -q /dev/pts; then mount --bind /dev/pts "$r/dev/pts" && MOUNTED+=("$r/dev/pts"); fi
	if mountpoint -q /dev/shm; then mount --bind /dev/shm "$r/dev/shm" && MOUNTED+=("$r/dev/shm"); fi
}

# Runs a command in root $1 with /proc and /dev mounted; unmounts on any exit.
in_root() {
	local r=$1 rc=0
	shift
	trap umount_all EXIT
	trap 'umount_all; exit 130' INT TERM
	mount_all "$r"
	chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
		DEBIAN_FRONTEND=noninteractive "$@" || rc=$?
	umount_all
	trap - EXIT INT TERM
	return $rc
}

# Removes a (half-built) root: first whatever a killed run left mounted in
# it (/dev!), and never crossing into another file system.
safe_rm() {
	local d=$1 m
	[ -e "$d" ] || return 0
	d=$(cd "$d" && pwd -P)
	for m in $(awk -v d="$d/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r); do
		umount "$m" 2>/dev/null || umount -l "$m"
	done
	rm -rf --one-file-system "$d"
}

root_ok() {
	local r=$1 v=$2
	[ -f "$r/.pacelc-root" ] && [ "$(cat "$r/.pacelc-root")" = "$(packages_of "$v")" ] &&
		[ -x "$r/usr/lib/postgresql/$v/bin/pg_config" ] &&
		[ -x "$r/usr/lib/postgresql/$v/bin/postgres" ] &&
		chroot "$r" /usr/lib/postgresql/"$v"/bin/pg_config --pgxs >/dev/null 2>&1 &&
		chroot "$r" id postgres >/dev/null 2>&1
}

build_root() {
	local v=$1 suite r tmp mirror
	suite=$(suite_of "$v")
	r="$ROOTS/$suite"
	mirror=$(host_mirror) || return 1
	if ! command -v debootstrap >/dev/null; then
		echo "pacelc: installing debootstrap" >&2
		DEBIAN_FRONTEND=noninteractive apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
	fi
	mkdir -p "$ROOTS"
	for d in "$ROOTS/.$suite".tmp.* "$r.old"; do
		[ -d "$d" ] && safe_rm "$d"
	done
	rm -f "$ROOTS/.$suite".tmp.*.log
	tmp=$(mktemp -d "$ROOTS/.$suite.tmp.XXXXXX")
	chmod 755 "$tmp"
	echo "pacelc: building the Debian $suite root for PostgreSQL $v from $mirror (takes a few minutes)" >&2
	if ! debootstrap --variant=minbase "$suite" "$tmp" "$mirror" >"$tmp.log" 2>&1; then
		tail -30 "$tmp.log" >&2
		echo "pacelc: debootstrap $suite failed (log: $tmp.log)" >&2
		safe_rm "$tmp"
		return 1
	fi
	# No service starts in the root, and no "main" cluster is created.
	printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
	chmod 755 "$tmp/usr/sbin/policy-rc.d"
	# A mirror that lags (or a clock ahead of it) must not stop sid's updates.
	echo 'Acquire::Check-Valid-Until "false";' >"$tmp/etc/apt/apt.conf.d/99pacelc"
	mkdir -p "$tmp/etc/postgresql-common"
	echo "create_main_cluster = false" >"$tmp/etc/postgresql-common/createcluster.conf"
	# shellcheck disable=SC2046
	if ! in_root "$tmp" sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends $(packages_of "$v")" \
		>>"$tmp.log" 2>&1; then
		tail -30 "$tmp.log" >&2
		echo "pacelc: installing PostgreSQL $v packages in the $suite root failed (log: $tmp.log);" \
			"Debian $suite may have uninstallable packages right now: retry later" >&2
		safe_rm "$tmp"
		return 1
	fi
	in_root "$tmp" apt-get clean >/dev/null 2>&1 || true
	packages_of "$v" >"$tmp/.pacelc-root"
	if ! root_ok "$tmp" "$v"; then
		echo "pacelc: the new $suite root fails its check (log: $tmp.log)" >&2
		safe_rm "$tmp"
		return 1
	fi
	[ -e "$r" ] && mv "$r" "$r.old"
	mv "$tmp" "$r"
	safe_rm "$r.old"
	rm -f "$tmp.log"
	echo "pacelc: $suite root ready in $r" >&2
}

# ensure VERSION: the caller holds the root's lock.
ensure() {
	local v=$1 r
	r="$ROOTS/$(suite_of "$v")"
	root_ok "$r" "$v" || build_root "$v" || return 1
	echo "$r"
}

cmd=${1:-}
case "$cmd" in
	ensure)
		ensure "$2" ;;
	run)
		s=$(suite_of "$2"); shift 2
		in_root "$ROOTS/$s" "$@" ;;
	lockfile)
		s=$(suite_of "$2"); mkdir -p "$ROOTS"; echo "$ROOTS/$s.lock" ;;
	*)
		sed -n '2,16p' "$0"; exit 2 ;;
esac
