"""A fake clock (and a fake coin) for the pod scripts, the scripts themselves unchanged.

`fake_bin(directory)` writes two commands into `directory`, to be put first on the PATH
of a script (through `_PGBIN`, see test_backup_restore.script_env):

- `date`: the real `date`, but "now" is the real time plus LABELING_TEST_CLOCK_OFFSET
  seconds, or the fixed LABELING_TEST_CLOCK (seconds since 1970: a clock that stands
  still, for two runs "in the same second"). A `date` given a time of its own (-d, -r)
  is left alone.
- `od`: the real `od`, but the 4 random bytes of a backup's stamp suffix
  (`od -An -N4 -tx1 /dev/urandom`) are LABELING_TEST_RANDOM4 (8 hex digits) when it is
  set: two runs that draw the same suffix.

    env = clocked(env_for(...), bin_dir, offset=timedelta(days=365))   # a pod a year ahead
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Optional

OFFSET = "LABELING_TEST_CLOCK_OFFSET"
FROZEN = "LABELING_TEST_CLOCK"
RANDOM4 = "LABELING_TEST_RANDOM4"

DATE = """#!/bin/sh
# The test's clock (tests/support/fake_clock.py).
for arg in "$@"; do
    case "$arg" in -d* | --date* | -r* | --reference* | -f* | --file* | -s* | --set*) exec {real} "$@" ;; esac
done
if [ -n "${{{frozen}:-}}" ]; then
    now=${{{frozen}}}
else
    now=$(($({real} +%s) + ${{{offset}:-0}}))
fi
exec {real} -d "@$now" "$@"
"""

OD = """#!/bin/sh
# The test's coin (tests/support/fake_clock.py).
if [ -n "${{{random4}:-}}" ] && [ "$*" = "-An -N4 -tx1 /dev/urandom" ]; then
    echo "${{{random4}}}" | sed 's/../ &/g'
    exit 0
fi
exec {real} "$@"
"""


def fake_bin(directory: Path) -> Path:
    """Writes the fake `date` and `od` into `directory` (created); returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, template in (("date", DATE), ("od", OD)):
        real = shutil.which(name, path="/usr/bin:/bin")
        assert real, f"no {name} on this machine"
        path = directory / name
        path.write_text(template.format(real=real, frozen=FROZEN, offset=OFFSET, random4=RANDOM4))
        path.chmod(0o755)
    return directory


def clocked(env: dict, directory: Path, offset: Optional[timedelta] = None, frozen: Optional[datetime] = None,
            random4: Optional[str] = None) -> dict:
    """`env` (a script's, with `_PGBIN`) with the fake commands of `directory` first on its PATH."""
    env = {**env, "_PGBIN": f"{directory}{os.pathsep}{env['_PGBIN']}"}
    if offset is not None:
        env[OFFSET] = str(int(offset.total_seconds()))
    if frozen is not None:
        env[FROZEN] = str(int(frozen.timestamp()))
    if random4 is not None:
        env[RANDOM4] = random4
    return env
