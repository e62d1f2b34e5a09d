#!/bin/sh
# Runs the whole test suite from a fresh clone: creates the virtualenv `venv`
# (the one `pulumi up` uses too), installs the pinned requirements, and runs
# pytest, which starts the servers it needs on loopback. Extra arguments go to pytest.
set -eu
cd "$(dirname "$0")"
if [ ! -x venv/bin/python ]; then
    python3 -m venv venv
fi
venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
exec venv/bin/python -m pytest "$@"
