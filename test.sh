#!/bin/sh
# Runs the whole test suite from a fresh clone: creates the virtualenv `venv`
# (the one `pulumi up` uses too), installs the pinned requirements, and runs
# pytest, which starts the servers it needs (PostgreSQL 15, an S3-compatible
# server) on loopback. Extra arguments go to pytest.
set -eu
cd "$(dirname "$0")"

# The integration tests need the PostgreSQL 15 server binaries of the system.
if ! ls /usr/lib/postgresql/15/bin/initdb >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing PostgreSQL 15 with apt-get ..."
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
    else
        echo "warning: PostgreSQL 15 (postgresql-15) is not installed; the database tests will fail" >&2
    fi
fi

# The backups of CVAT's data volume use restic; its tests fail without it.
if ! command -v restic >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing restic with apt-get ..."
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq restic >/dev/null
    else
        echo "warning: restic is not installed; the data volume's backup tests will fail" >&2
    fi
fi

if [ ! -x venv/bin/python ]; then
    python3 -m venv venv
fi
venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
exec venv/bin/python -m pytest "$@"
