#!/bin/sh
# Runs the tests from a fresh clone: creates the virtualenv `venv` (the one `pulumi up` uses
# too), installs the pinned requirements, and runs pytest, which starts the servers it needs
# (PostgreSQL 15, an S3-compatible server) on loopback.
#
#   ./test.sh              the whole suite, as CI runs it: on one worker more than the machine has
#                          cores (pytest-xdist), with the Hypothesis profile `ci`
#   ./test.sh --fast       the loop while working: -m "not integration and not slow" (no server,
#                          no property-based test, no benchmark), with the Hypothesis profile `quick`
#   ./test.sh [--fast] ARGS   extra arguments go to pytest after those: files, -k NAME, -x,
#                          -m "integration" (one tier), -n 0 (one process), ...
#
# The tiers are pytest markers (pytest.ini; tests/conftest.py gives them): `integration` needs a
# real server (PostgreSQL, the S3 server, restic, Django) or runs the pod scripts, `slow` are the
# property-based tests and the benchmarks. A test that starts a server without the marker fails.
# Environment:
#   HYPOTHESIS_PROFILE   `ci` (Hypothesis's CI settings, each test's own number of examples) or
#                        `quick` (at most 10 examples a test); test.sh sets it unless it is set
#   TEST_WORKERS         pytest-xdist workers (default: the cores, and one more for the whole
#                        suite, whose integration tests wait on servers and processes; 0: one process)
#   TEST_AWS_CLI         `installed`: the pod scripts run the installed AWS CLI, not the one the
#                        tests load once and fork (tests/support/servers.py AwsCliServer)
set -eu
cd "$(dirname "$0")"

fast=""
if [ "${1:-}" = "--fast" ]; then
    fast=1
    shift
fi

# The integration tests need the PostgreSQL 15 server binaries of the system.
if [ -z "$fast" ] && ! ls /usr/lib/postgresql/15/bin/initdb >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing PostgreSQL 15 with apt-get ..."
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
    else
        echo "warning: PostgreSQL 15 (postgresql-15) is not installed; the database tests will fail" >&2
    fi
fi

# The backups of CVAT's data volume use restic; its tests fail without it.
if [ -z "$fast" ] && ! command -v restic >/dev/null 2>&1; then
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

# Each worker starts servers of its own. The workers share the tests out in their order (the
# longest folders first: tests/conftest.py); one out of tests takes over the last half of what
# another has left (worksteal), so a file's tests may end on two workers, each making its fixtures.
cores=$(nproc 2>/dev/null || echo 2)
if [ -n "$fast" ]; then
    count=${TEST_WORKERS:-$cores}
else
    count=${TEST_WORKERS:-$((cores + 1))}
fi
workers="-n $count --dist worksteal"
if [ "$count" = 0 ]; then
    workers=""
fi
if [ -n "$fast" ]; then
    export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-quick}"
    # shellcheck disable=SC2086  # $workers: words on purpose
    exec venv/bin/python -m pytest $workers -m "not integration and not slow" "$@"
fi
export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}"
# shellcheck disable=SC2086
exec venv/bin/python -m pytest $workers "$@"
