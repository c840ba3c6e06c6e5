#!/usr/bin/env bash
# Runs every check and test. Installs the Python tools the tests use (moto's SQS server, the
# SAM CLI, cfn-lint) into a venv outside the repository on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${ECHO_TOOLS_VENV:-$HOME/.cache/echo-lambda/tools-venv}"
if [ ! -x "$venv/bin/moto_server" ] || [ ! -x "$venv/bin/sam" ] || [ ! -x "$venv/bin/cfn-lint" ]; then
  echo "installing moto[server], aws-sam-cli and cfn-lint into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet 'moto[server]' aws-sam-cli cfn-lint
fi
export PATH="$venv/bin:$PATH"
export SAM_CLI_TELEMETRY=0

cargo fmt --all -- --check
sam validate --lint --template template.yaml --region eu-west-1
cfn-lint template.yaml
cargo test --workspace
