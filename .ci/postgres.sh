#!/usr/bin/env bash
# Make a PostgreSQL server answer on 127.0.0.1:5432 with trust auth for user postgres and a
# database "test" (used by tests/store/test_e2e_cli.py). Idempotent: does nothing when a
# server already answers and the database exists. Needs root (apt-get) when it must install.
set -euo pipefail

HOST=127.0.0.1
PORT=5432

ready() { pg_isready -q -h "$HOST" -p "$PORT" >/dev/null 2>&1; }

ensure_test_db() {
    if ! psql -h "$HOST" -p "$PORT" -U postgres -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'test'" 2>/dev/null | grep -q 1; then
        psql -h "$HOST" -p "$PORT" -U postgres -d postgres -c "CREATE DATABASE test" >/dev/null
        echo "postgres.sh: created database test"
    fi
}

if command -v pg_isready >/dev/null 2>&1 && ready; then
    ensure_test_db || echo "postgres.sh: server answers but database test could not be checked" >&2
    echo "postgres.sh: PostgreSQL already answers on $HOST:$PORT"
    exit 0
fi

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
fi

VER=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$VER" ]; then
    VER=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    pg_createcluster "$VER" main >/dev/null
fi
CONF=/etc/postgresql/$VER/main

# trust auth for local socket and loopback TCP (test machines only)
HBA=$CONF/pg_hba.conf
if ! grep -q "^# hepatrial-ci" "$HBA"; then
    cp "$HBA" "$HBA.orig"
    {
        echo "# hepatrial-ci: trust for local tests"
        echo "local   all   all                 trust"
        echo "host    all   all   127.0.0.1/32  trust"
        echo "host    all   all   ::1/128       trust"
    } >"$HBA"
fi
if ! grep -q "^listen_addresses" "$CONF/postgresql.conf"; then
    echo "listen_addresses = 'localhost'" >>"$CONF/postgresql.conf"
fi
if ! grep -q "^port = $PORT" "$CONF/postgresql.conf"; then
    sed -i "s/^port = .*/port = $PORT/" "$CONF/postgresql.conf"
fi

if pg_ctlcluster "$VER" main status >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$VER" main reload
else
    pg_ctlcluster --skip-systemctl-redirect "$VER" main start
fi

for _ in $(seq 1 30); do
    ready && break
    sleep 1
done
ready || { echo "postgres.sh: PostgreSQL did not start on $HOST:$PORT" >&2; exit 1; }
ensure_test_db
echo "postgres.sh: PostgreSQL $VER answers on $HOST:$PORT (user postgres, trust, database test)"
