# Sourced by scripts: `start_postgres` starts a throwaway PostgreSQL 15 server on a free
# loopback port, exports POSTGRES_ADMIN_URL, and removes the server when the script exits.

PG_BIN=/usr/lib/postgresql/15/bin

start_postgres() {
  if [ ! -x "$PG_BIN/initdb" ]; then
    echo "PostgreSQL 15 server binaries are missing; installing the postgresql package" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
  fi
  # initdb refuses to run as root: run the server as the unprivileged `postgres` user then.
  PG_AS_OWNER=()
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    PG_AS_OWNER=(runuser -u postgres --)
  fi
  PG_DIR=$(mktemp -d /tmp/callhook-pg.XXXXXX)
  chmod 755 "$PG_DIR"
  [ "$(id -u)" -ne 0 ] || chown postgres "$PG_DIR"
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  trap stop_postgres EXIT
  "${PG_AS_OWNER[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 >/dev/null
  "${PG_AS_OWNER[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w \
    -o "-p $port -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=400 $*" start >/dev/null
  echo "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (throwaway)"
  export POSTGRES_ADMIN_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

stop_postgres() {
  "${PG_AS_OWNER[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
}
