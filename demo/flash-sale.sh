#!/usr/bin/env bash
# The flash-sale demo: one command plays the Black Friday story against a
# throw-away primary and a hot standby whose replay lags a few seconds, and
# shows what each approach does (oversells, stale reads, errors, throughput,
# latency).  See doc/demo.md.
#
#   bash demo/flash-sale.sh [--short] [--lag SECONDS] [--buyers N] [--clients N]
#                           [--stock N] [--lock-timeout MS] [--rounds 1,2,3,4,5] ...
#   bash demo/flash-sale.sh --help      # every option (demo/flash_sale.py)
#
# As root (fresh Debian 12): installs the missing packages
# (test/install-deps.sh), builds and installs pacelc into the PostgreSQL that
# PG_CONFIG names (default /usr/lib/postgresql/15/bin/pg_config), then reruns
# itself as user postgres.  As any other user it expects pacelc to be
# installed there already.  The servers live in a mktemp directory, listen on
# a unix socket in it only, and are stopped (and the directory removed) on
# exit, Ctrl-C or kill.  Exit status is non-zero if an invariant broke.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export PG_CONFIG

case " $* " in
	*" -h "*|*" --help "*) sed -n '2,17p' "$0"; exec /usr/bin/python3 "$HERE/flash_sale.py" --help ;;
esac

if [ "$(id -u)" = 0 ]; then
	ROOT=$(cd "$HERE/.." && pwd)
	bash "$ROOT/test/install-deps.sh"
	echo "building and installing pacelc into $("$PG_CONFIG" --pkglibdir) ..."
	make -C "$ROOT" -s PG_CONFIG="$PG_CONFIG" all install >/dev/null
	COPY=$(mktemp -d /tmp/pacelc-demo-src.XXXXXX)
	cp -a "$HERE" "$COPY/demo"
	chown -R postgres: "$COPY"
	trap 'rm -rf "$COPY"' EXIT
	rc=0
	runuser -u postgres -- env PG_CONFIG="$PG_CONFIG" ${PORT:+PORT="$PORT"} \
		bash "$COPY/demo/flash-sale.sh" "$@" || rc=$?
	exit $rc
fi

LAG=2
SHORT=0
args=()
while [ $# -gt 0 ]; do
	case $1 in
		--lag) LAG=$2; args+=("$1" "$2"); shift 2 ;;
		--lag=*) LAG=${1#--lag=}; args+=("$1"); shift ;;
		--short) SHORT=1; args+=("$1"); shift ;;
		*) args+=("$1"); shift ;;
	esac
done
if [ $SHORT = 1 ] && ! printf '%s\n' "${args[@]}" | grep -q '^--lag'; then
	LAG=1
	args+=(--lag 1)
fi
PORT=${PORT:-55610}
SPORT=$((PORT + 1))
BIN=$("$PG_CONFIG" --bindir)
if [ ! -f "$("$PG_CONFIG" --pkglibdir)/pacelc.so" ]; then
	echo "pacelc is not installed in $("$PG_CONFIG" --pkglibdir); run this script as root (or make install)" >&2
	exit 1
fi

DIR=$(mktemp -d /tmp/pacelc-demo.XXXXXX)
cleanup() {
	trap - EXIT INT TERM
	for d in standby primary; do
		[ -f "$DIR/$d/postmaster.pid" ] && "$BIN/pg_ctl" -D "$DIR/$d" -m immediate stop >/dev/null 2>&1 || true
	done
	rm -rf "$DIR"
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

step() { printf '%s\n' "$*"; }
step "starting a throw-away primary and a hot standby in $DIR (replay delay ${LAG}s) ..."
"$BIN/initdb" -D "$DIR/primary" -A trust -U postgres >/dev/null
cat >>"$DIR/primary/postgresql.conf" <<CONF
shared_preload_libraries = 'pacelc'
listen_addresses = ''
unix_socket_directories = '$DIR'
port = $PORT
max_connections = 200
shared_buffers = 128MB
synchronous_commit = on
wal_level = replica
max_wal_senders = 4
max_wal_size = 2GB
checkpoint_timeout = 30min
log_min_messages = warning
CONF
"$BIN/pg_ctl" -D "$DIR/primary" -l "$DIR/primary.log" -w start >/dev/null
"$BIN/pg_basebackup" -h "$DIR" -p "$PORT" -U postgres -D "$DIR/standby" -R -X stream -c fast
cat >>"$DIR/standby/postgresql.conf" <<CONF
port = $SPORT
hot_standby = on
recovery_min_apply_delay = '${LAG}s'
max_standby_streaming_delay = -1
CONF
"$BIN/pg_ctl" -D "$DIR/standby" -l "$DIR/standby.log" -w start >/dev/null

rc=0
/usr/bin/python3 "$HERE/flash_sale.py" \
	--primary "host=$DIR port=$PORT user=postgres dbname=postgres" \
	--standby "host=$DIR port=$SPORT user=postgres dbname=postgres" \
	${args[@]+"${args[@]}"} || rc=$?
if [ $rc != 0 ]; then
	echo "--- last lines of the primary's log:"; tail -20 "$DIR/primary.log"
	echo "--- last lines of the standby's log:"; tail -20 "$DIR/standby.log"
fi
exit $rc
