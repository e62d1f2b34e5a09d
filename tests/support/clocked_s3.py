"""An S3 server (moto's server mode) whose clock a test sets: what it stores gets `LastModified` = now + offset.

The backups command dates a backup by its manifest's `LastModified` (the server's
time), not by its stamp (the pod's clock). To write a backup "taken 2 days ago",
or one whose pod clock was a year ahead of the server, a test sets the server's
clock for the uploads:

    with server.clock(-timedelta(days=2)):
        s3.put_object(...)          # LastModified: two days ago

    with server.frozen(moment):
        ...                         # every LastModified: `moment`, to the second

Run as a script, this module is the server: it starts moto's server with
`moto.s3.models.utcnow` shifted by the offset read from CLOCKED_S3_OFFSET_FILE
at each call (seconds, a float; or `@<epoch seconds>`: a stopped clock).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterator, Optional

from support import servers
from support.servers import MotoServer, free_port

OFFSET_ENV = "CLOCKED_S3_OFFSET_FILE"


class ClockedMotoServer(MotoServer):
    """MotoServer (unauthenticated) with a settable clock for what it stores."""

    def __init__(self) -> None:  # noqa: D107  (MotoServer's start, with this module as the program)
        servers.uses.append("the S3 server with a clock (moto)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.authenticated = False
        self.access_key, self.secret_key = "test-access-key", "test-secret-key"
        self.offset_file = Path(tempfile.mkstemp(prefix="labeling-s3-clock-")[1])
        self.offset_file.write_text("0")
        env = {**os.environ, "S3_IGNORE_SUBDOMAIN_BUCKETNAME": "true", OFFSET_ENV: str(self.offset_file),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]))}
        self.log = tempfile.NamedTemporaryFile(prefix="labeling-moto-clocked-", suffix=".log", delete=False)
        self.process = subprocess.Popen([sys.executable, __file__, "-H", "127.0.0.1", "-p", str(self.port)],
                                        stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self._wait()

    def set_clock(self, offset: timedelta) -> None:
        self.offset_file.write_text(repr(offset.total_seconds()))

    @contextlib.contextmanager
    def frozen(self, moment: datetime) -> Iterator[None]:
        """The server's clock stands at `moment` inside the block."""
        self.offset_file.write_text(f"@{moment.timestamp()!r}")
        try:
            yield
        finally:
            self.set_clock(timedelta(0))

    @contextlib.contextmanager
    def clock(self, offset: timedelta) -> Iterator[None]:
        """The server's clock is `offset` away from the real one inside the block."""
        self.set_clock(offset)
        try:
            yield
        finally:
            self.set_clock(timedelta(0))

    def stop(self) -> None:
        super().stop()
        self.offset_file.unlink(missing_ok=True)


_shared: Optional[ClockedMotoServer] = None


def shared_server() -> ClockedMotoServer:
    """One server for the whole run (the modules that import the fixture share it), stopped at exit."""
    global _shared
    servers.uses.append("the S3 server with a clock (moto)")
    if _shared is None:
        _shared = ClockedMotoServer()
        atexit.register(_shared.stop)
    return _shared


def _serve() -> None:
    import datetime

    import moto.s3.models as models
    from moto.server import main

    real = models.utcnow
    path = os.environ[OFFSET_ENV]

    def utcnow() -> datetime.datetime:
        try:
            text = Path(path).read_text().strip()
            if text.startswith("@"):  # naive UTC, as moto's own utcnow
                return datetime.datetime.fromtimestamp(float(text[1:]), datetime.timezone.utc).replace(tzinfo=None)
            offset = float(text or 0)
        except (OSError, ValueError):
            offset = 0.0
        return real() + datetime.timedelta(seconds=offset)

    models.utcnow = utcnow
    main(sys.argv[1:])


if __name__ == "__main__":
    _serve()
