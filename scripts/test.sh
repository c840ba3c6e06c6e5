#!/usr/bin/env bash
# Runs every check and test. Installs the Python tools the tests use (moto's SQS server, the
# SAM CLI, cfn-lint) into a venv outside the repository on first use (LightRAG's server into a
# venv of its own, scripts/lightrag.sh), and starts a Directus with
# ECHO's schema (scripts/directus.sh; installed into ~/.cache on first use, ~5 minutes) on a free
# loopback port for the Directus store's tests, a throw-away PostgreSQL (scripts/postgres.sh,
# Debian's `postgresql` package) for the resources tests and LightRAG's server (scripts/lightrag.sh)
# for the RAG tests, stopping them afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${ECHO_TOOLS_VENV:-$HOME/.cache/echo-lambda/tools-venv}"
if [ ! -x "$venv/bin/moto_server" ] || [ ! -x "$venv/bin/sam" ] || [ ! -x "$venv/bin/cfn-lint" ]; then
  echo "installing moto[server], aws-sam-cli and cfn-lint into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet 'moto[server]' aws-sam-cli cfn-lint
fi
bash scripts/lightrag.sh install
export PATH="$venv/bin:$PATH"
export SAM_CLI_TELEMETRY=0

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
sam validate --lint --template template.yaml --region eu-west-1
cfn-lint template.yaml

# Directus for the contract suite, the Directus flow test and the session-token test.
snapshot="${ECHO_DIRECTUS_SNAPSHOT:-../shared/data/directus-snapshot}"
DIRECTUS_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export DIRECTUS_PORT
pg_dir=""
rag_dir=""
cleanup() {
  bash scripts/directus.sh stop --purge || true
  if [ -n "$pg_dir" ]; then bash scripts/postgres.sh stop "$pg_dir" || true; fi
  if [ -n "$rag_dir" ]; then bash scripts/lightrag.sh stop "$rag_dir" || true; fi
}
trap cleanup EXIT
directus_env=$(bash scripts/directus.sh start "$snapshot")
eval "$directus_env"
export DIRECTUS_TEST_URL="$DIRECTUS_BASE_URL" DIRECTUS_TEST_TOKEN="$DIRECTUS_TOKEN" DIRECTUS_TEST_SECRET="$DIRECTUS_SECRET"
export DIRECTUS_TEST_ADMIN_EMAIL="$DIRECTUS_ADMIN_EMAIL" DIRECTUS_TEST_ADMIN_PASSWORD="$DIRECTUS_ADMIN_PASSWORD"
# Only the tests read these; echo-local in the tests picks its store itself.
unset ECHO_STORE DIRECTUS_BASE_URL DIRECTUS_TOKEN DIRECTUS_SECRET

# PostgreSQL for the resources tests: exports RESOURCES_TEST_DATABASE_URL.
postgres_env=$(bash scripts/postgres.sh start)
eval "$postgres_env"
pg_dir="$ECHO_PG_DIR"

# LightRAG's server, offline (its LLM and embeddings a local fake): exports LIGHTRAG_TEST_*.
lightrag_env=$(bash scripts/lightrag.sh start)
eval "$lightrag_env"
rag_dir="$ECHO_LIGHTRAG_DIR"
export LIGHTRAG_TEST_URL="$LIGHTRAG_SERVER_URL" LIGHTRAG_TEST_API_KEY="$LIGHTRAG_API_KEY"
unset LIGHTRAG_SERVER_URL LIGHTRAG_API_KEY

# local_invoke.rs starts every function's binary, as `cargo lambda watch` would.
cargo build --workspace --bins
cargo test --workspace
