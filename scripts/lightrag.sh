#!/usr/bin/env bash
# LightRAG's own server (`lightrag-hku[api]==1.5.7`, rag.md §4) on 127.0.0.1, offline: its LLM and
# embeddings come from scripts/fake_openai.py on another loopback port, tiktoken's two encoding
# files from the tiktoken-rs crate the workspace already depends on. For tests and echo-local.
#
#   scripts/lightrag.sh install      pip install the server into its venv (once, ~2 minutes)
#   scripts/lightrag.sh start        start a fresh server (and its fake) in a new directory;
#                                    prints lines to eval (below)
#   scripts/lightrag.sh stop <dir>   stop both and delete the directory
#
# `start` prints, on stdout:
#   export LIGHTRAG_SERVER_URL=http://127.0.0.1:<port> LIGHTRAG_API_KEY=<key>
#   export ECHO_LIGHTRAG_DIR=<the directory holding its data, logs and pid files>
#   export ECHO_LIGHTRAG_FAKE_LLM=http://127.0.0.1:<port>/v1   (the stand-in model, for trying RAG out)
# The server has a venv of its own (ECHO_LIGHTRAG_VENV, default ~/.cache/echo-lambda/lightrag-venv):
# its pinned FastAPI stack must not move the SAM CLI's dependencies in the tools venv.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${ECHO_LIGHTRAG_VENV:-$HOME/.cache/echo-lambda/lightrag-venv}"
partial=""
die() {
  echo "lightrag.sh: $*" >&2
  if [ -n "$partial" ]; then stop "$partial"; fi
  exit 1
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

install() {
  if [ -x "$venv/bin/lightrag-server" ]; then return 0; fi
  echo "lightrag.sh: installing lightrag-hku[api]==1.5.7 into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip >&2
  "$venv/bin/pip" install --quiet 'lightrag-hku[api]==1.5.7' >&2
}

# tiktoken looks its files up by the sha1 of their download URL (rag.md §4).
tiktoken_files() {
  local dir=$1 assets
  assets=$(cargo metadata --format-version 1 --locked 2>/dev/null | python3 -c '
import json, os, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "tiktoken-rs":
        print(os.path.join(os.path.dirname(p["manifest_path"]), "assets"))
        break') || true
  [ -d "$assets" ] || die "tiktoken-rs's assets not found (run cargo fetch; cargo metadata --locked needs an up-to-date Cargo.lock)"
  mkdir -p "$dir"
  cp "$assets/o200k_base.tiktoken" "$dir/fb374d419588a4632f3f557e76b4b70aebbca790"
  cp "$assets/cl100k_base.tiktoken" "$dir/9b5ad71b2ce5302211f9c61530b329a4922fc6a4"
  (cd "$dir" && printf '%s  %s\n' \
    446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d fb374d419588a4632f3f557e76b4b70aebbca790 \
    223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7 9b5ad71b2ce5302211f9c61530b329a4922fc6a4 \
    | sha256sum --check --quiet) || die "tiktoken files differ from what tiktoken checks"
}

start() {
  install
  local dir port fake key
  dir=$(mktemp -d "${TMPDIR:-/tmp}/echo-lightrag.XXXXXX")
  partial=$dir
  port=${LIGHTRAG_PORT:-$(free_port)}
  fake=$(free_port)
  key="echo-rag-$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
  mkdir -p "$dir/work" "$dir/input" "$dir/logs"
  tiktoken_files "$dir/tiktoken"
  python3 scripts/fake_openai.py "$fake" 256 fake >"$dir/fake.log" 2>&1 &
  echo $! >"$dir/fake.pid"
  cat >"$dir/.env" <<EOF
HOST=127.0.0.1
PORT=$port
WORKING_DIR=$dir/work
INPUT_DIR=$dir/input
LOG_DIR=$dir/logs
LIGHTRAG_API_KEY=$key
WHITELIST_PATHS=/health
LLM_BINDING=openai
LLM_MODEL=fake-llm
LLM_BINDING_HOST=http://127.0.0.1:$fake/v1
LLM_BINDING_API_KEY=fake
EMBEDDING_BINDING=openai
EMBEDDING_MODEL=fake-embedding
EMBEDDING_DIM=256
EMBEDDING_SEND_DIM=false
EMBEDDING_BINDING_HOST=http://127.0.0.1:$fake/v1
EMBEDDING_BINDING_API_KEY=fake
TIKTOKEN_CACHE_DIR=$dir/tiktoken
MAX_GLEANING=0
SOURCE_IDS_LIMIT_METHOD=KEEP
CHUNK_SIZE=${LIGHTRAG_CHUNK_SIZE:-300}
CHUNK_OVERLAP_SIZE=30
EOF
  # The .env is read from the working directory; variables set here would win over it.
  # Its own output goes to the log, so a caller reading ours (`$(lightrag.sh start)`) is not held open.
  (cd "$dir" && exec env -u PORT -u HOST -u LIGHTRAG_API_KEY "$venv/bin/lightrag-server") </dev/null >"$dir/server.log" 2>&1 &
  echo $! >"$dir/server.pid"
  for _ in $(seq 1 120); do
    if python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/health', timeout=2)" 2>/dev/null; then
      partial=""
      echo "export LIGHTRAG_SERVER_URL=http://127.0.0.1:$port LIGHTRAG_API_KEY=$key"
      echo "export ECHO_LIGHTRAG_DIR=$dir"
      echo "export ECHO_LIGHTRAG_FAKE_LLM=http://127.0.0.1:$fake/v1"
      echo "lightrag.sh: lightrag-server 1.5.7 on 127.0.0.1:$port (fake LLM on $fake), data in $dir" >&2
      return 0
    fi
    kill -0 "$(cat "$dir/server.pid")" 2>/dev/null || die "the server exited: $(tail -5 "$dir/server.log")"
    sleep 0.5
  done
  die "the server did not answer /health within 60 s: $(tail -5 "$dir/server.log")"
}

stop() {
  local dir=${1:-} pid
  partial=""
  [ -n "$dir" ] && [ -d "$dir" ] || return 0
  for f in server.pid fake.pid; do
    if [ -f "$dir/$f" ]; then
      pid=$(cat "$dir/$f")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$dir"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop "${2:-}" ;;
  *) echo "usage: $0 install | start | stop <dir>" >&2; exit 2 ;;
esac
