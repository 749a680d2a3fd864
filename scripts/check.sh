#!/usr/bin/env bash
# Every check in one command: lint, format, and the whole test suite (fast + slow, offline).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
ruff check .
ruff format --check .
# -n 1: every test runs in one pytest-xdist worker process, never in the runner itself, so a native
# crash inside a test (e.g. in OpenVINO) fails that test ("worker crashed while running …") and the
# run goes on with a new worker; LLM inference also runs in the app's own model process.
python -m pytest -q -n 1 "$@"
