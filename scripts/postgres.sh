#!/usr/bin/env bash
# A throw-away PostgreSQL server on 127.0.0.1 for the resources tests (Debian's `postgresql`
# package: apt-get install postgresql).
#
#   scripts/postgres.sh start [port]   initdb a fresh data directory, start the server, create the
#                                      database `echo_test`; prints lines to eval (below)
#   scripts/postgres.sh stop <dir>     stop the server of that directory and delete it
#   scripts/postgres.sh ctl <dir> stop|start   stop or start it again, keeping its data and port
#
# `start` prints, on stdout:
#   export RESOURCES_TEST_DATABASE_URL=postgresql://echo@127.0.0.1:<port>/echo_test
#   export ECHO_PG_DIR=<the directory holding data/, the socket and server.log>
# so `eval "$(bash scripts/postgres.sh start)"` prepares `cargo test --workspace --test api resources_api`, and
# `bash scripts/postgres.sh stop "$ECHO_PG_DIR"` ends it. The server trusts local connections
# (no password), listens only on 127.0.0.1, keeps its socket in the directory and runs with
# fsync off: it is for tests only. initdb refuses to run as root, so as root the server runs as
# the `postgres` user the package creates. The outage test starts a server of its own with this
# script and stops and restarts it with `ctl`.
set -euo pipefail

# A `start` that fails leaves nothing behind.
partial=""
die() {
  echo "postgres.sh: $*" >&2
  if [ -n "$partial" ]; then stop "$partial"; fi
  exit 1
}

bin_dir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$dir" ] && [ -x "$dir/initdb" ] || die "no PostgreSQL server binaries under /usr/lib/postgresql: apt-get install postgresql"
  echo "$dir"
}

# Runs a command as the server's user: `postgres` when we are root, else ourselves.
as_server() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  local bin port dir
  bin=$(bin_dir)
  port=${1:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
  dir=$(mktemp -d "${TMPDIR:-/tmp}/echo-postgres.XXXXXX")
  partial=$dir
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root needs the postgres user (apt-get install postgresql creates it)"
    chown postgres "$dir"
  fi
  as_server "$bin/initdb" --pgdata="$dir/data" --auth=trust --username=echo --encoding=UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
    || die "initdb failed: $(tail -5 "$dir/initdb.log")"
  # In the configuration file, so `ctl start` brings it back on the same port.
  printf "listen_addresses = '127.0.0.1'\nport = %s\nunix_socket_directories = '%s'\nfsync = off\nfull_page_writes = off\n" \
    "$port" "$dir" | as_server tee -a "$dir/data/postgresql.conf" >/dev/null
  ctl "$dir" start || die "the server did not start: $(tail -5 "$dir/server.log")"
  "$bin/createdb" --host=127.0.0.1 --port="$port" --username=echo echo_test || die "createdb failed"
  partial=""
  echo "export RESOURCES_TEST_DATABASE_URL=postgresql://echo@127.0.0.1:$port/echo_test"
  echo "export ECHO_PG_DIR=$dir"
  echo "postgres.sh: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port, data in $dir" >&2
}

ctl() {
  local dir=$1 action=$2
  case "$action" in
    start) as_server "$(bin_dir)/pg_ctl" --pgdata="$dir/data" --log="$dir/server.log" --wait --silent start ;;
    stop) as_server "$(bin_dir)/pg_ctl" --pgdata="$dir/data" --mode=fast --wait --silent stop ;;
    *) die "ctl: start or stop, not $action" ;;
  esac
}

stop() {
  local dir=${1:-}
  partial=""
  [ -n "$dir" ] && [ -d "$dir" ] || return 0
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_server "$(bin_dir)/pg_ctl" --pgdata="$dir/data" --mode=immediate --wait --silent stop || true
  fi
  rm -rf "$dir"
}

case "${1:-}" in
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  ctl) ctl "${2:?ctl needs the directory}" "${3:?ctl needs start or stop}" ;;
  *) die "usage: $0 start [port] | stop <dir> | ctl <dir> start|stop" ;;
esac
