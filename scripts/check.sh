#!/usr/bin/env bash
# Every check in one command: lint, format, and the whole test suite (fast + slow, offline).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
ruff check .
ruff format --check .
python -m pytest -q "$@"
