#!/usr/bin/env bash
# Regenerate requirements/ci.txt: the hash-pinned lock CI installs from (.ci/run).
# pyproject.toml keeps loose ranges for library users; this file pins one tested set.
# Needs uv (`pip install uv`, any recent version).  Run it from anywhere; commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."
uv pip compile pyproject.toml \
    --extra dev --extra spark --extra mcmc --extra web --extra rules --extra kafka --extra flows --extra delta \
    --python-version 3.11 --generate-hashes --annotation-style line \
    --custom-compile-command "scripts/lock.sh" \
    "$@" -o requirements/ci.txt
