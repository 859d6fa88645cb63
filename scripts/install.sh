#!/usr/bin/env bash
# Install everything vo-similarity needs on a fresh Debian machine (run as root).
# Idempotent: a second run checks and returns in seconds.
#   - Debian packages: the built-in real sample (stellarium-data), real FITS test
#     files (ftools-fv); PostgreSQL + GAVO DaCHS come with scripts/setup_dachs.sh.
#   - a virtual environment in .venv with the package installed editable, with the
#     archive pipeline (extra `pipeline`: torch, lightly, ...), Dask distributed
#     (extra `cluster`) and the dev tools.
#   - the web page's JavaScript library sampjs from the npm registry, pinned by
#     vo_similarity/web/package-lock.json (npm ci; publish serves it).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(stellarium-data ftools-fv)

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "install: Debian packages ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "install: creating .venv with $($PY --version)"
    "$PY" -m venv .venv
fi

# Reinstall only when the dependency declaration changed.
stamp=.venv/.vo-similarity-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    # torch's CUDA build alone is ~5.5 GB in the venv, plus pip's unpacking:
    # say so before pip fails half-way with "No space left on device".
    need_mib=8000
    free_mib=$(df -Pm .venv | awk 'NR == 2 {print $4}')
    if ! .venv/bin/python -c "import torch" 2>/dev/null && [ "${free_mib:-0}" -lt "$need_mib" ]; then
        echo "install: only ${free_mib} MiB free where .venv is; the Python packages need about ${need_mib} MiB (torch's CUDA build): free some space and run this again" >&2
        exit 1
    fi
    echo "install: Python packages (the client, and the pipeline extra: torch, lightly, ...); the first time takes a few minutes"
    .venv/bin/pip install -q --disable-pip-version-check -e '.[pipeline,cluster,dev]' 2>&1 \
        | grep -v "is ignored: it is neither a file nor a directory" || true
    .venv/bin/python -c "import vo_similarity.client, torch, torchvision, lightly, onnx, numba, distributed" \
        || { echo "install: the Python environment is broken (see above)" >&2; exit 1; }
    echo "$want" > "$stamp"
fi
# sampjs for the web page's SAMP buttons (vo_similarity/web/node_modules).
if ! command -v npm >/dev/null; then
    echo "install: Debian packages nodejs npm (for the web page's sampjs)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -q --no-install-recommends nodejs npm >/dev/null
fi
web=vo_similarity/web
npm_stamp=$web/node_modules/.vo-similarity-installed
npm_want=$(sha256sum "$web/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$npm_stamp" 2>/dev/null)" != "$npm_want" ] || [ ! -f "$web/node_modules/sampjs/samp.js" ]; then
    echo "install: sampjs from the npm registry ($web/package-lock.json)"
    npm ci --prefix "$web" --no-audit --no-fund --loglevel=error >/dev/null
    echo "$npm_want" > "$npm_stamp"
fi
echo "install: ready (.venv/bin/vo-similarity)"
