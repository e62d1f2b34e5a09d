"""Real servers for the integration tests and benchmarks, started on loopback.

- `MotoServer`: an S3-compatible HTTP server (moto's server mode), optionally
  checking signatures against IAM access keys like a real server.
- `PostgresServer`: a throwaway PostgreSQL cluster (the system's PostgreSQL 15
  binaries), with password authentication over TCP.
- `AwsCliServer`: the AWS CLI loaded once, for the pod scripts' `aws` commands
  (`aws_cli_bin()`): each command forks from it instead of starting Python anew.
No root, docker or network needed (as root, PostgreSQL runs as `postgres`).
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional


# The servers started or used since the test began (conftest clears it before each test): a test
# not marked `integration` that finds something here fails.
uses: list[str] = []


# The program refuses a loopback storageEndpoint (inside a pod it is the pod itself), so the
# stacks of the preflight tests name the test server by this host instead, which only this
# process resolves, to loopback (pod_visible_url).
TEST_S3_HOST = "s3.labeling.test"


def pod_visible_url(url: str) -> str:
    """A test server's URL as a stack's storageEndpoint: its loopback address replaced by TEST_S3_HOST."""
    return url.replace("://127.0.0.1:", f"://{TEST_S3_HOST}:")


def free_port() -> int:
    """A TCP port on loopback that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoServer:
    """moto's S3 server on 127.0.0.1; with `authenticated`, it refuses wrong keys."""

    def __init__(self, authenticated: bool = False):
        uses.append("the S3 server (moto)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.authenticated = authenticated
        self.access_key = "test-access-key"
        self.secret_key = "test-secret-key"
        env = dict(os.environ)
        # Every client uses path-style requests; a host name that is no IP (TEST_S3_HOST)
        # must not be read as a bucket name.
        env["S3_IGNORE_SUBDOMAIN_BUCKETNAME"] = "true"
        if authenticated:
            # The first requests (creating the IAM user and key) are let through; then signatures are checked.
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
        # A file, not a pipe: an unread pipe fills up and blocks the server.
        self.log = tempfile.NamedTemporaryFile(prefix="labeling-moto-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self._wait()
        if authenticated:
            self._create_access_key()

    def _wait(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto exited early: {Path(self.log.name).read_text()}")
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1)
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"moto did not answer on {self.url} within {timeout}s")

    def _create_access_key(self) -> None:
        import boto3

        iam = boto3.client(
            "iam", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup"
        )
        iam.create_user(UserName="workspace")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName="workspace", PolicyName="all", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="workspace")["AccessKey"]
        self.access_key, self.secret_key = key["AccessKeyId"], key["SecretAccessKey"]

    def settings(self, region: str = "us-east-1") -> dict:
        """Settings for components.endpoint.s3_client."""
        return {"endpoint_url": self.url, "region": region, "access_key": self.access_key, "secret_key": self.secret_key}

    def client(self, region: str = "us-east-1"):
        from components.endpoint import s3_client

        return s3_client(**self.settings(region))

    def shared_client(self):
        """One client of client() kept for the test helpers that read and write objects (and add no
        event handler to it): building a client costs tenths of a second, and they make hundreds."""
        if getattr(self, "_shared_client", None) is None:
            self._shared_client = self.client()
        return self._shared_client

    def environment(self, region: str = "us-east-1") -> dict[str, str]:
        """Environment for the AWS CLI."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_DEFAULT_REGION": region,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self.log.close()
        os.unlink(self.log.name)


def postgres_bindir() -> Optional[Path]:
    """The bin directory of the system's PostgreSQL 15 (or newest) server, if installed."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    preferred = [c for c in candidates if "/15/" in c]
    chosen = (preferred or candidates or [shutil.which("initdb") or ""])[-1]
    return Path(chosen).parent if chosen else None


class PostgresServer:
    """A throwaway PostgreSQL cluster: trust on the local socket, scram-sha-256 over TCP."""

    def __init__(self):
        uses.append("PostgreSQL")
        bindir = postgres_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL server binaries not found (install postgresql-15)")
        self.bindir = bindir
        self.port = free_port()
        self.host = "127.0.0.1"
        self.root = Path(tempfile.mkdtemp(prefix="labeling-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root
        self.user = None
        if os.geteuid() == 0:
            # initdb refuses to run as root.
            self.user = "postgres"
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        os.chmod(self.root, 0o755)
        self._as_owner(
            [
                str(bindir / "initdb"),
                "--pgdata",
                str(self.data),
                "--username=postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            ]
        )
        options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_owner(
            [str(bindir / "pg_ctl"), "--pgdata", str(self.data), "--log", str(self.root / "log"), "-o", options, "--wait", "start"]
        )

    def _as_owner(self, command: list[str]) -> subprocess.CompletedProcess:
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, check=True, capture_output=True, text=True)

    def admin(self, sql: str, database: str = "postgres") -> str:
        """Runs SQL as the superuser over the local socket; returns the unaligned output."""
        result = subprocess.run(
            [str(self.bindir / "psql"), "-h", str(self.socket_dir), "-p", str(self.port), "-U", "postgres", "-d", database,
             "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(result.stderr)
        return result.stdout.strip()

    def create_database(self, name: str, owner: str, password: str) -> dict[str, str]:
        """Creates a role and its database; returns the libpq environment to reach it over TCP."""
        quoted = password.replace("'", "''")
        self.admin(f"CREATE ROLE \"{owner}\" LOGIN SUPERUSER PASSWORD '{quoted}'")
        self.admin(f'CREATE DATABASE "{name}" OWNER "{owner}"')
        return self.environment(name, owner, password)

    def environment(self, name: str, owner: str, password: str) -> dict[str, str]:
        return {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": owner, "PGPASSWORD": password, "PGDATABASE": name}

    def stop(self) -> None:
        self._as_owner([str(self.bindir / "pg_ctl"), "--pgdata", str(self.data), "--mode=immediate", "stop"])
        shutil.rmtree(self.root, ignore_errors=True)


# ----- the AWS CLI, loaded once --------------------------------------------------------------

# The `aws` the pod scripts find first on their PATH in the tests (test_backup_restore.script_env).
# Starting the AWS CLI costs Python a second or two of imports and data files, and a backup runs
# it a dozen times: this client hands the command to AwsCliServer, which forks a process that has
# loaded the CLI already, and that process runs the same `awscli.clidriver.main` the installed
# `aws` runs, with this process's arguments, environment, working directory, umask, resource
# limits and standard streams (passed as file descriptors: output goes straight to the script).
# The client exits with the command's status; a signal it gets goes on to the command, and when
# the client dies (a killed script) the command dies with it. Where the preloaded CLI could
# behave otherwise (a variable read when Python or the CLI start, another text encoding), or
# when the server is gone, the client runs the installed `aws` instead.
AWS_CLIENT = '''#!{python} -S
# `aws` for the pod scripts under test, written by tests/support/servers.py (AwsCliServer): the installed
# AWS CLI ({real}), run in a process forked from one that has loaded it already.
import array, json, os, resource, signal, socket, sys

REAL = {real!r}
SOCKET = {socket!r}
STARTUP = {startup!r}
LIMITS = {limits!r}
FORWARDED = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM)


def installed():
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    os.execv(REAL, [REAL, *sys.argv[1:]])


# Held until they can be passed on (the handlers below): a signal that comes first is not lost.
signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
if any(name.startswith("PYTHON") or name in STARTUP for name in os.environ):
    installed()
try:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.connect(SOCKET)
    umask = os.umask(0)
    os.umask(umask)
    ignored = [int(number) for number in FORWARDED if signal.getsignal(number) == signal.SIG_IGN]
    request = {{"argv": sys.argv[1:], "env": dict(os.environ), "cwd": os.getcwd(), "umask": umask, "ignored": ignored,
               "limits": {{name: resource.getrlimit(getattr(resource, name)) for name in LIMITS}},
               "encodings": [sys.stdin.encoding, sys.stdout.encoding, sys.stderr.encoding, sys.getfilesystemencoding()]}}
    server.sendmsg([json.dumps(request).encode() + b"\\n"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0, 1, 2]))])
except Exception:  # no server, a standard stream closed, ...
    installed()
received = []


def forward(number, frame):
    received.append(number)
    try:
        server.send(bytes([number]))
    except OSError:
        pass


for number in FORWARDED:
    if int(number) not in ignored:
        signal.signal(number, forward)
signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
# The answer, then the end of the connection (the command's process exits).
answer = b""
while True:
    data = server.recv(64)
    if not data:
        break
    answer += data
answer = answer.decode()
if answer == "installed":
    installed()
if answer.startswith("exit "):
    sys.exit(int(answer[5:]))
# The command died without an answer: of the signal passed on to it, or killed.
number = received[-1] if received else signal.SIGKILL
signal.signal(number, signal.SIG_DFL)
os.kill(os.getpid(), number)
'''
# Read by Python or the AWS CLI when they start, not when a command runs: the client runs the
# installed `aws` when one is set (awscli/__init__.py, botocore configprovider.py and compat.py).
AWS_STARTUP_VARIABLES = ("AWS_DATA_PATH", "AWS_NEW_RETRIES_2026", "BOTO_DISABLE_CRT")
# The resource limits a command gets from its client (a test's `ulimit -f`, a full disk).
AWS_LIMITS = ("RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_DATA", "RLIMIT_CORE")


class AwsCliServer:
    """The AWS CLI loaded in a server process; `bin` holds the `aws` client that runs commands in it."""

    def __init__(self) -> None:
        real = Path(sys.executable).parent / "aws"
        if not real.exists():
            raise RuntimeError(f"the AWS CLI is not installed beside {sys.executable}")
        self.root = Path(tempfile.mkdtemp(prefix="labeling-aws-cli-"))
        self.socket = self.root / "socket"
        self.bin = self.root / "bin"
        self.bin.mkdir()
        client = self.bin / "aws"
        client.write_text(AWS_CLIENT.format(python=sys.executable, real=str(real), socket=str(self.socket),
                                            startup=AWS_STARTUP_VARIABLES, limits=AWS_LIMITS))
        client.chmod(0o755)
        self.log = open(self.root / "log", "wb")
        # The environment of a pod script, which sets no locale and no Python variable: the client
        # runs the installed `aws` for scripts whose environment would start Python otherwise.
        env = {"PATH": os.environ["PATH"], "HOME": "/tmp"}
        self.process = subprocess.Popen([sys.executable, __file__, "aws-cli-server", str(self.socket), str(os.getpid())],
                                        stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)
        deadline = time.monotonic() + 60
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the AWS CLI server did not start: {(self.root / 'log').read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)


_aws_cli: Optional[AwsCliServer] = None


def aws_cli_server() -> AwsCliServer:
    """The run's AwsCliServer (this process's: each xdist worker has its own), started on first
    use and stopped at exit."""
    global _aws_cli
    uses.append("the AWS CLI server")
    if _aws_cli is None:
        import atexit

        _aws_cli = AwsCliServer()
        atexit.register(_aws_cli.stop)
    return _aws_cli


def aws_cli_bin() -> Path:
    """The directory of the preloaded `aws`: first on a pod script's PATH, it runs the installed
    AWS CLI faster."""
    return aws_cli_server().bin


def _serve_aws_cli(path: str, parent: int) -> None:
    """The server: loads the AWS CLI, then forks a process per client (until its parent is gone)."""
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [entry for entry in sys.path if entry and str(Path(entry).resolve()) != here]
    import awscli.clidriver  # noqa: F401  (loaded once, here: what every command would load)

    _import_what_commands_import()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".binding")
    listener.listen(128)
    os.rename(path + ".binding", path)  # the socket appears once it accepts
    listener.settimeout(2)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the commands are reaped by the system
    while os.getppid() == parent:
        try:
            connection, _ = listener.accept()
        except socket.timeout:
            continue
        connection.setblocking(True)
        if os.fork() == 0:
            listener.close()
            try:
                _run_aws_command(connection)
            finally:
                os._exit(1)
        connection.close()


# Commands like the scripts' (s3api calls, queries, transfers): what they import, the server imports.
AWS_WARM_UP = (
    ["s3api", "head-object", "--bucket", "warm-up", "--key", "k", "--query", "ETag", "--output", "text"],
    ["s3api", "list-objects-v2", "--bucket", "warm-up", "--query", "Contents[].[Key]", "--output", "text"],
    ["s3", "cp", "{file}", "s3://warm-up/k", "--only-show-errors", "--no-progress"],
)


def _import_what_commands_import() -> None:
    """Runs AWS_WARM_UP in forked processes against a port nobody listens on, and imports here the
    modules they imported: only the modules, no state (each command's own objects are its own)."""
    import importlib

    import awscli.clidriver

    scratch = tempfile.mkdtemp(prefix="labeling-aws-warm-up-")
    (Path(scratch) / "file").write_text("warm-up")
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "AWS_MAX_ATTEMPTS": "1", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "warm-up", "AWS_SECRET_ACCESS_KEY": "warm-up", "AWS_CONFIG_FILE": "/nonexistent"}
    modules: set[str] = set()
    for argv in AWS_WARM_UP:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            before = set(sys.modules)
            os.environ.update(env)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            sys.argv = ["aws", *(arg.format(file=f"{scratch}/file") for arg in argv)]
            try:
                awscli.clidriver.main()
            finally:
                os.write(write, json.dumps(sorted(set(sys.modules) - before)).encode())
                os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as answer:
            modules.update(json.loads(answer.read() or b"[]"))
        os.waitpid(pid, 0)
    shutil.rmtree(scratch, ignore_errors=True)
    for name in sorted(modules):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - aliases such as __mp_main__: the command imports them itself
            pass


def _receive_command(connection: socket.socket) -> tuple[dict, list[int]]:
    """The client's request and its standard streams (0, 1, 2) as file descriptors."""
    import array

    fds = array.array("i")
    data, ancillary, _, _ = connection.recvmsg(1 << 20, socket.CMSG_LEN(3 * fds.itemsize))
    for _, _, payload in ancillary:
        fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    while not data.endswith(b"\n"):
        more = connection.recv(1 << 20)
        if not more:
            raise EOFError("the client left before its request was whole")
        data += more
    return json.loads(data), list(fds)


def _take_the_clients_place(request: dict, fds: list[int]) -> None:
    """This process becomes the client's `aws`: its streams, directory, umask, limits, environment."""
    import io
    import resource

    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        if fd > 2:
            os.close(fd)
    # Streams as Python makes them at start (pylifecycle.c create_stdio), on the client's descriptors.
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.open(0, "rb", closefd=False), encoding=sys.stdin.encoding,
                                                  errors=sys.stdin.errors, line_buffering=False)
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(io.open(1, "wb", closefd=False), encoding=sys.stdout.encoding,
                                                    errors=sys.stdout.errors, line_buffering=os.isatty(1))
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(io.open(2, "wb", closefd=False), encoding=sys.stderr.encoding,
                                                    errors=sys.stderr.errors, line_buffering=True)
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    for name, limits in request["limits"].items():
        try:
            resource.setrlimit(getattr(resource, name), tuple(limits))
        except (ValueError, OSError):  # above this process's hard limit: the server's is the test's
            pass
    os.environ.clear()
    os.environ.update(request["env"])
    import awscli

    # What importing awscli and the installed `aws` script do to the environment.
    os.environ["AWS_DATA_PATH"] = os.pathsep.join(awscli._awscli_data_path[-1:])
    if os.environ.get("LC_CTYPE", "") == "UTF-8":
        os.environ["LC_CTYPE"] = "en_US.UTF-8"
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for number in request["ignored"]:
        signal.signal(number, signal.SIG_IGN)


def _follow_client(connection: socket.socket) -> None:
    """Signals from the client go on to this command; when the client is gone, so is the command."""
    while True:
        data = connection.recv(16)
        if not data:
            os.kill(os.getpid(), signal.SIGKILL)
        for number in data:
            os.kill(os.getpid(), number)


def _run_aws_command(connection: socket.socket) -> None:
    """In a forked process: runs one client's command, answers its exit status, and exits."""
    import threading
    import traceback

    try:
        request, fds = _receive_command(connection)
        encodings = [sys.stdin.encoding, sys.stdout.encoding, sys.stderr.encoding, sys.getfilesystemencoding()]
        if request["encodings"] != encodings:
            raise ValueError(f"the client's encodings {request['encodings']} are not the server's {encodings}")
        _take_the_clients_place(request, fds)
    except Exception:  # noqa: BLE001 - whatever it is, the installed `aws` runs the command instead
        traceback.print_exc(file=sys.__stderr__)
        connection.sendall(b"installed")
        os._exit(0)
    threading.Thread(target=_follow_client, args=(connection,), daemon=True).start()
    import awscli.clidriver

    sys.argv = [str(Path(sys.executable).parent / "aws"), *request["argv"]]
    try:
        code = awscli.clidriver.main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 1
        if isinstance(exit_.code, str):
            print(exit_.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - as the interpreter does for the installed `aws`
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            pass
    code = 0 if code is None else code & 0xFF
    connection.sendall(b"exit %d" % code)
    os._exit(code)


if __name__ == "__main__" and sys.argv[1:2] == ["aws-cli-server"]:
    _serve_aws_cli(sys.argv[2], int(sys.argv[3]))
