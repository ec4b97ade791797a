#!/usr/bin/env bash
# Install (Debian packages) and start a throwaway PostgreSQL cluster for the store tests, then
# export DNSIEVE_TEST_PG_URL.  Idempotent: re-running reuses the cluster if it is already up.
#
# Use from .ci/run (as root, on a fresh Debian machine with apt access):
#     source .ci/postgres.sh
# Or run it to print the URL:  bash .ci/postgres.sh
#
# Settings (environment, all optional): DNSIEVE_PG_PORT (54329), DNSIEVE_PGDATA
# (/tmp/dnsieve-pgdata).  The cluster listens on 127.0.0.1 only and on a unix socket in /tmp.

_dnsieve_pg_setup() {
    local port="${DNSIEVE_PG_PORT:-54329}"
    local data="${DNSIEVE_PGDATA:-/tmp/dnsieve-pgdata}"
    local bin
    bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq postgresql >/dev/null
        bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
    fi
    # The server refuses to run as root: run it as the package's postgres user (or create one).
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    local as_pg=(su postgres -s /bin/sh -c)
    if [ "$(id -u)" != 0 ]; then as_pg=(sh -c); fi
    if [ ! -s "$data/PG_VERSION" ]; then
        mkdir -p "$data"
        [ "$(id -u)" = 0 ] && chown postgres:postgres "$data"
        chmod 700 "$data"
        "${as_pg[@]}" "'$bin/initdb' -D '$data' -U postgres -A trust --no-sync -E UTF8 >/dev/null"
    fi
    if ! "${as_pg[@]}" "'$bin/pg_ctl' -D '$data' status" >/dev/null 2>&1; then
        "${as_pg[@]}" "'$bin/pg_ctl' -D '$data' -l '$data/server.log' -w -t 60 \
            -o \"-p $port -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off\" start >/dev/null"
    fi
    local psql=("$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qtA -v ON_ERROR_STOP=1)
    if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname='dnsieve'")" != 1 ]; then
        "${psql[@]}" -c "CREATE ROLE dnsieve LOGIN PASSWORD 'dnsieve' CREATEDB"
    fi
    if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname='dnsieve_test'")" != 1 ]; then
        "${psql[@]}" -c "CREATE DATABASE dnsieve_test OWNER dnsieve"
    fi
    export DNSIEVE_TEST_PG_URL="postgresql+psycopg://dnsieve:dnsieve@127.0.0.1:$port/dnsieve_test"
}

_dnsieve_pg_setup
unset -f _dnsieve_pg_setup
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    echo "export DNSIEVE_TEST_PG_URL=$DNSIEVE_TEST_PG_URL"
fi
