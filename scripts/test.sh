#!/usr/bin/env bash
# Run the test suite: install what is missing (Python environment, Debian's
# PostgreSQL, DaCHS and STILTS; Xvfb, TOPCAT and Aladin as SAMP receivers), then
# pytest. The tests bring up their own
# DaCHS instance (own PostgreSQL cluster, root directory and ports) and stop it
# at the end; the DaCHS that scripts/setup_dachs.sh set up is never touched.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/ingest -x).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/setup_dachs.sh --packages-only
bash scripts/setup_desktop.sh  # Xvfb, TOPCAT, Aladin for the SAMP tests
exec .venv/bin/python -m pytest -ra "$@"
