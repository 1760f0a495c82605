#!/usr/bin/env bash
# The one check command, shared by developers and CI: format, lint, types, tests.
# Usage: bash scripts/check.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ruff format --check"; ruff format --check .
echo "== ruff check";          ruff check .
echo "== pyright";             pyright
echo "== pytest";              python -m pytest "$@"
