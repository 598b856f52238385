#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for the `postgres` tests (tests/pg.py):
#   eval "$(bash scripts/pg_test_server.sh start DIR)"   # prints the exports for the tests
#   bash scripts/pg_test_server.sh stop DIR
# The cluster lives in DIR (made if missing), listens on 127.0.0.1 at a free port and on a socket
# in DIR, and has a role `dm_tune` (password in PGPASSWORD, never in the URL) that may create
# databases. As root it runs as the `postgres` user, since initdb refuses root.
set -euo pipefail
cmd="${1:-}"
dir="${2:-}"
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  echo "usage: $0 start|stop DIR" >&2
  exit 2
fi
# Debian's packages put the server tools in /usr/lib/postgresql/VERSION/bin, off the PATH
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
[ -x "$bin/pg_ctl" ] || bin="$(dirname "$(command -v pg_ctl || echo /nonexistent/pg_ctl)")"
if [ ! -x "$bin/pg_ctl" ] || [ ! -x "$bin/initdb" ] || [ ! -x "$bin/psql" ]; then
  echo "no initdb/pg_ctl/psql: apt-get install postgresql" >&2
  exit 2
fi
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case "$cmd" in
  start)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; chmod 755 "$dir"; fi
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    password="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=200" \
      start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    as_owner "$bin/psql" -h "$dir" -p "$port" -U postgres -d postgres -q -v ON_ERROR_STOP=1 \
      -c "CREATE ROLE dm_tune LOGIN CREATEDB PASSWORD '$password'" \
      -c "CREATE DATABASE dm_tune OWNER dm_tune" >/dev/null
    echo "export DM_TUNE_TEST_PG_URL=postgresql+psycopg://dm_tune@127.0.0.1:$port/dm_tune"
    echo "export PGPASSWORD=$password"
    ;;
  stop)
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    fi
    ;;
  *)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
