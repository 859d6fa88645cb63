#!/usr/bin/env bash
# Bring up PostgreSQL and GAVO DaCHS from Debian's packages, bound to
# 127.0.0.1 on a fixed port, idempotently.
#
#   sudo scripts/setup_dachs.sh            # first run: a minute or two
#   sudo scripts/setup_dachs.sh            # rerun: seconds, keeps all data
#   sudo scripts/setup_dachs.sh --packages-only
#       only install and configure the Debian packages; configure, start or
#       touch no DaCHS instance (what the test suite needs: it runs its own)
#
# Environment:
#   VO_SIM_DACHS_PORT       HTTP port of DaCHS (default 8080)
#   VO_SIM_AUTHORITY        IVOA authority of the publisher DIDs
#                           (default vo-similarity.example; must match the manifest)
#   VO_SIM_SKIP_APT=1       never call apt-get (packages must be there)
#
# Runs as root with no standard input (CI). Prints the server URL last.
# Debian's post-install of gavodachs2-server fails where services may not be
# started by maintainer scripts (policy-rc.d): we start PostgreSQL ourselves and
# finish the configuration with `dpkg --configure -a` (docs/publish.md).
set -euo pipefail
exec </dev/null

PACKAGES_ONLY=0
case "${1:-}" in
  "") ;;
  --packages-only) PACKAGES_ONLY=1 ;;
  *) echo "usage: setup_dachs.sh [--packages-only]" >&2; exit 2 ;;
esac

PORT="${VO_SIM_DACHS_PORT:-8080}"
AUTHORITY="${VO_SIM_AUTHORITY:-vo-similarity.example}"
PG_VERSION=15
GAVO_ROOT=/var/gavo
export DEBIAN_FRONTEND=noninteractive

log() { echo "[setup_dachs] $*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
  echo "setup_dachs.sh: run as root (it installs packages and starts services)" >&2
  exit 1
fi

# A process that is gone, or a zombie nobody reaped (a killed server whose
# parent was ended too), holds no lock.
is_live() {
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null || true)
  [[ -n "$state" && "$state" != Z* ]]
}

# Lock files left by a PostgreSQL that was killed make the next start fail
# ("lock file ... already exists"); remove them when their process is dead.
clear_stale_postgres_locks() {
  local lock pid
  for lock in /var/run/postgresql/.s.PGSQL.*.lock "/var/lib/postgresql/$PG_VERSION/main/postmaster.pid"; do
    [[ -f "$lock" ]] || continue
    pid=$(head -n 1 "$lock" | tr -d ' ')
    if [[ -n "$pid" ]] && ! is_live "$pid"; then
      log "removing stale $lock (process $pid is gone)"
      rm -f "$lock"
    fi
  done
}

start_postgres() {
  if ! pg_lsclusters -h 2>/dev/null | awk -v v="$PG_VERSION" '$1==v && $2=="main"' | grep -q online; then
    log "starting PostgreSQL $PG_VERSION"
    clear_stale_postgres_locks
    pg_ctlcluster "$PG_VERSION" main start
  fi
}

# 1. Packages --------------------------------------------------------------
need=()
for pkg in postgresql gavodachs2-server stilts curl; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
# /etc/gavo.rc before the package configures itself, so DaCHS never binds elsewhere.
write_gavo_rc() {
  local tmp
  tmp=$(mktemp)
  cat >"$tmp" <<RC
# Written by vo-similarity scripts/setup_dachs.sh; rerunning it rewrites this file.
[general]
rootDir: $GAVO_ROOT

[web]
bindAddress: 127.0.0.1
serverPort: $PORT
serverURL: http://127.0.0.1:$PORT
sitename: vo-similarity
corsOriginPat: .*

[ivoa]
authority: $AUTHORITY

RC
  if ! cmp -s "$tmp" /etc/gavo.rc 2>/dev/null; then
    install -m 0644 "$tmp" /etc/gavo.rc
    log "wrote /etc/gavo.rc (127.0.0.1:$PORT, authority $AUTHORITY)"
  fi
  rm -f "$tmp"
}
((PACKAGES_ONLY)) || write_gavo_rc

if ((${#need[@]})); then
  [[ "${VO_SIM_SKIP_APT:-0}" == 1 ]] && { log "missing packages: ${need[*]}"; exit 1; }
  log "installing ${need[*]} (first run only)"
  apt-get update -qq
  # The post-install of gavodachs2-server may fail here (services cannot be
  # started from maintainer scripts); we complete it below.
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || true
fi

# 2. PostgreSQL, then finish DaCHS's configuration -----------------------
# dpkg --audit exits 1 when it finds something: test its output, not its status
# (under pipefail a pipe into grep would hide exactly the case we look for).
unfinished=$(dpkg --audit 2>/dev/null || true)
if ((!PACKAGES_ONLY)) || [[ -n "$unfinished" ]]; then
  start_postgres  # the package's configuration needs the database server
fi
if [[ -n "$unfinished" ]]; then
  log "completing package configuration (dpkg --configure -a)"
  dpkg --configure -a >/dev/null
fi
for pkg in postgresql gavodachs2-server stilts; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
    || { echo "setup_dachs.sh: package $pkg did not install" >&2; exit 1; }
done
if ((PACKAGES_ONLY)); then
  log "packages ready (postgresql, gavodachs2-server, stilts)"
  exit 0
fi
if ! su postgres -c "psql -tAc \"select 1 from pg_database where datname='gavo'\"" | grep -q 1; then
  log "creating DaCHS's database (dachs init)"
  dachs init -d gavo
fi

# 3. DaCHS ---------------------------------------------------------------
URL="http://127.0.0.1:$PORT"
if curl -fsS -o /dev/null --max-time 5 "$URL/tap/availability" 2>/dev/null; then
  if [[ /etc/gavo.rc -nt "$GAVO_ROOT/state" ]]; then
    dachs serv restart >/dev/null 2>&1 || true
  fi
else
  log "starting DaCHS on $URL"
  dachs serv start >/dev/null 2>&1 || dachs serv restart >/dev/null 2>&1 || true
fi
for _ in $(seq 1 60); do
  curl -fsS -o /dev/null --max-time 2 "$URL/tap/availability" 2>/dev/null && break
  sleep 0.5
done
curl -fsS -o /dev/null --max-time 5 "$URL/tap/availability" \
  || { echo "setup_dachs.sh: DaCHS did not answer on $URL; see $GAVO_ROOT/logs/" >&2; exit 1; }
touch "$GAVO_ROOT/state"
echo "$URL"
