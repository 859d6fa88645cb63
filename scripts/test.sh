#!/usr/bin/env bash
# Run the test suite: install what is missing, start PostgreSQL + DaCHS, run pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/ingest -x).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/setup_dachs.sh
exec .venv/bin/python -m pytest -ra "$@"
