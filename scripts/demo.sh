#!/usr/bin/env bash
# Install everything and run the whole pipeline on the built-in real sample
# (555 deep-sky photographs from Debian's stellarium-data), ending with what you
# can open or query. Work directory: ./work/builtin (override: WORKDIR=...).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/setup_dachs.sh
exec .venv/bin/vo-similarity demo "${WORKDIR:-work/builtin}"
