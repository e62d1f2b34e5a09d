"""What the backups command refuses, and how (issue 15, items 12 (its part), 13 and 14).

- A bad --endpoint, an empty --prefix, an unknown option: one `error:` line naming the
  flag, exit 2 (usage); `status` says "stale" with exit 3.
- An endpoint's user:password@ is never printed.
- `download -o` writes only to a missing path or over a regular file: a device, a
  folder, a FIFO or a symbolic link is refused, --force or not, before anything is written.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from backups import cli, download, errors, reference
from backups import location as where
from backups.display import redact_text, redact_url
from support.harness import ROOT
from support.backups_command import (  # noqa: F401  (fixtures)
    archive,
    command,
    fake_pulumi,
    layout,
    moto,
    one_error,
    only_one_line,
    postgres_tools,
)

SECRET = "s3cr3t-Pa55"


def run(*argv: str, pulumi=None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out, err, **({"run": pulumi} if pulumi else {}))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def no_pulumi(monkeypatch):
    """No Pulumi CLI on PATH, no keys in the environment: only the options count."""
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)


# ---------------------------------------------------------------- item 13: endpoints, prefix, usage errors


BAD_ENDPOINTS = {
    "http://[::1": "is not a URL (Invalid IPv6 URL)",
    "http://s3_local:9000": "'s3_local' is not a valid host name",
    "http://$(id):9000": "'$(id)' is not a valid host name",
    "http://minio.storage.internal:0": "port 0 is not a port",
    "http://minio:99999": "is not a URL (Port out of range",
    "http://minio:port": "is not a URL",
    "http://mi nio:9000": "is not a valid host name",
    "localhost:9000": "needs a scheme and a host",
    "http://minio:9000?x=1": "must not have a query",
}


@pytest.mark.parametrize("endpoint", list(BAD_ENDPOINTS))
def test_a_bad_endpoint_is_a_usage_error_naming_the_flag(no_pulumi, endpoint):
    code, out, err = run("--endpoint", endpoint, "--bucket", "b", "--prefix", "acme/", "--access-key", "a", "--secret-key", "b", "list")
    assert code == 2 and out == ""
    only_one_line(err, f"error: --endpoint {endpoint!r}", BAD_ENDPOINTS[endpoint], "e.g. http://localhost:9000")
    # Refused first, whatever else is missing (no stack is asked: there is no Pulumi CLI here).
    code, _, err = run("--endpoint", endpoint, "status")
    assert code == 2
    only_one_line(err, "--endpoint", BAD_ENDPOINTS[endpoint])


@pytest.mark.parametrize("endpoint", ["http://[::1", "http://s3_local:9000"])
def test_the_real_command_ends_a_bad_endpoint_without_a_traceback(endpoint):
    env = {"PATH": "/nonexistent", "HOME": "/nonexistent", "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}
    result = subprocess.run([sys.executable, "-m", "backups", "--endpoint", endpoint, "--bucket", "b",
                             "--prefix", "acme/", "list"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    only_one_line(result.stderr, f"--endpoint {endpoint!r}")


def test_good_endpoints_pass():
    for endpoint in ("http://localhost:9000", "http://[::1]:9000", "https://s3.fr-par.scw.cloud", "http://10.0.0.7:9000/",
                     "http://minio-1.storage.internal:9000"):
        assert where.endpoint_problem(endpoint.rstrip("/")) is None, endpoint


@pytest.mark.parametrize("options,flag", [
    (["--prefix", ""], "--prefix is empty"),
    (["--prefix", "/"], "--prefix is empty"),
    (["--prefix", "  "], "--prefix is empty"),
    (["--bucket", ""], "--bucket is empty"),
    (["--endpoint", ""], "--endpoint is empty"),
    (["--region", ""], "--region is empty"),
])
def test_an_empty_option_says_so(no_pulumi, options, flag):
    code, _, err = run(*options, "list")
    assert code == 2
    only_one_line(err, flag)
    assert "Pulumi" not in err
    code, _, err = run("--endpoint", "http://localhost:9000", "--bucket", "b", "--prefix", "acme/", *options, "list")
    assert code == 2
    only_one_line(err, flag)


def test_an_empty_prefix_in_the_stack_names_the_output(monkeypatch):
    outputs = {"backupBucket": "b", "backupPrefix": ""}
    config = {"storageProvider": "minio", "storageEndpoint": "http://localhost:9000", "storageAccessKey": "a", "storageSecretKey": "b"}
    code, _, err = run("list", pulumi=fake_pulumi(outputs, config))
    assert code == 1
    only_one_line(err, "the stack's backupPrefix output is empty: pass --prefix")


LOCAL = "http://localhost:9000"


@pytest.mark.parametrize("given,needed", [
    ([], "pass --endpoint, --bucket and --prefix instead, with --access-key and --secret-key "
         "(or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"),
    (["--endpoint", LOCAL, "--access-key", "a"], "pass --bucket and --prefix instead, with --secret-key (or AWS_SECRET_ACCESS_KEY)"),
    (["--endpoint", LOCAL, "--bucket", "b", "--access-key", "a", "--secret-key", "s"], "pass --prefix instead"),
    (["--bucket", "b", "--prefix", "acme/", "--access-key", "a", "--secret-key", "s"], "pass --endpoint instead"),
])
def test_without_the_pulumi_cli_the_error_names_the_options_still_missing(no_pulumi, given, needed):
    code, out, err = run(*given, "list")
    assert code == 1 and out == ""
    only_one_line(err, "the Pulumi CLI is not installed: ")
    assert err.rstrip().endswith(needed), err


def test_a_stack_that_cannot_be_read_names_the_stack_option_and_the_missing_ones(no_pulumi):
    def failing(command):
        raise where.StackUnavailable("`pulumi stack output` failed: error: no stack selected")

    code, _, err = run("--endpoint", LOCAL, "--access-key", "a", "--secret-key", "s", "list", pulumi=failing)
    assert code == 1
    only_one_line(err, "`pulumi stack output` failed: error: no stack selected: select a stack with --stack, "
                       "or pass --bucket and --prefix instead")


def test_missing_stack_outputs_are_named_with_the_option_to_pass(no_pulumi):
    config = {"storageProvider": "minio", "storageEndpoint": LOCAL, "storageAccessKey": "a", "storageSecretKey": "b"}
    code, _, err = run("list", pulumi=fake_pulumi({"backupBucket": "b"}, config))
    assert code == 1
    only_one_line(err, "the stack has no backupPrefix output: run `pulumi up` first, or pass --prefix")
    code, _, err = run("list", pulumi=fake_pulumi({}, config))
    assert code == 1
    only_one_line(err, "the stack has no backupBucket and backupPrefix outputs: run `pulumi up` first, or pass --bucket and --prefix")
    # What the options give is not asked of the stack.
    args = cli.parser().parse_args(["--prefix", "acme/", "list"])
    location = where.resolve_location(args, run=fake_pulumi({"backupBucket": "b"}, config))
    assert (location.endpoint_url, location.bucket, location.prefix) == (LOCAL, "b", "acme/database/")


@pytest.mark.parametrize("argv,fragment", [
    ([], "the following arguments are required: COMMAND"),
    (["lsit"], "invalid choice: 'lsit'"),
    (["--nope", "list"], "unrecognized arguments: --nope"),
    (["download"], "the following arguments are required: REF"),
    (["status", "--max-age", "soon"], "argument --max-age: 'soon' is not a duration"),
    (["now", "--reason", "whim"], "argument --reason: invalid choice: 'whim'"),
    (["status", "--schedule", "0 3 * *"], "--schedule '0 3 * *': bad schedule"),
])
def test_usage_errors_exit_2_with_one_error_line(no_pulumi, argv, fragment):
    code, out, err = run(*argv)
    assert code == 2 and out == ""
    only_one_line(err, fragment)
    if "argument" in fragment:  # argparse's own: where to read more
        assert err.rstrip().endswith("--help)")


def test_exit_codes_and_the_options_without_a_stack_are_documented():
    help_text = " ".join(cli.parser().format_help().split())
    assert "2 usage error" in help_text and "3 (status) the newest good backup is too old" in help_text
    assert ("without one, pass --endpoint, --bucket and --prefix, with the keys in --access-key and --secret-key "
            "(or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)") in help_text
    assert help_text.startswith("usage: python -m backups ")
    assert errors.StaleBackups.code == 3 and errors.UsageError.code == 2 and errors.BackupsError.code == 1


# ---------------------------------------------------------------- item 12 (the command's part): credentials


@pytest.mark.parametrize("endpoint", [
    f"http://AKIAUSER:{SECRET}@minio:9000",
    f"https://AKIAUSER:{SECRET}@s3.fr-par.scw.cloud",
    f"http://AKIAUSER:{SECRET}@[::1",  # and unparseable
    f"http://AKIAUSER:{SECRET}/x@minio:9000",  # an unescaped / in the password
    f"AKIAUSER:{SECRET}@minio:9000",  # no scheme
])
def test_credentials_in_the_endpoint_option_are_never_printed(no_pulumi, endpoint):
    code, out, err = run("--endpoint", endpoint, "--bucket", "b", "--prefix", "acme/", "list")
    assert code == 2
    only_one_line(err, "--endpoint", "must not hold credentials", "***@")
    assert SECRET not in err + out and "AKIAUSER" not in err + out


def test_credentials_in_the_stacks_endpoint_are_never_printed():
    outputs = {"backupBucket": "b", "backupPrefix": "acme/database/"}
    config = {"storageProvider": "minio", "storageEndpoint": f"http://AKIAUSER:{SECRET}@minio.example:9000",
              "storageAccessKey": "a", "storageSecretKey": "b"}
    code, out, err = run("list", pulumi=fake_pulumi(outputs, config))
    assert code == 1
    only_one_line(err, "the stack's storageEndpoint 'http://***@minio.example:9000' must not hold credentials", "--endpoint")
    assert SECRET not in err and "AKIAUSER" not in err


def test_redaction():
    assert redact_url("http://user:pw@host:9000/x") == "http://***@host:9000/x"
    assert redact_url("http://host:9000") == "http://host:9000"
    assert redact_url("user:p@ss@host") == "***@host"
    assert redact_text(f"cannot reach 'http://u:{SECRET}@h:1' nor https://k@h2/ or s3://bucket/key") == \
        "cannot reach 'http://***@h:1' nor https://***@h2/ or s3://bucket/key"


# ---------------------------------------------------------------- item 14: download -o


def char_device(path: Path) -> Path:
    """A character device like /dev/full (1, 7), made in the test's folder (root only); else /dev/full itself."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 7))
        return path
    except PermissionError:
        return Path("/dev/full")


def kind(path: Path) -> int:
    return stat.S_IFMT(path.lstat().st_mode)


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
def test_download_writes_only_a_new_or_a_regular_file(moto, layout, archive, tmp_path, force):
    stamp = layout.backup(timedelta(hours=1), archive)
    odd = tmp_path / "odd"
    odd.mkdir()
    device = char_device(odd / "full")
    fifo = odd / "fifo"
    os.mkfifo(fifo)
    real = odd / "real.dump"
    real.write_bytes(b"mine")
    link = odd / "link.dump"
    link.symlink_to(real)
    folder = odd / "folder"
    (folder / f"{stamp}.dump").mkdir(parents=True)  # -o folder: the file it would write is a folder
    before = {path: kind(path) for path in odd.rglob("*")}
    cases = {
        str(device): "a character device",
        str(fifo): "a FIFO (named pipe)",
        str(link): "a symbolic link",
        str(folder): "a folder",
    }
    for output, what in cases.items():
        code, out, err = command(moto, layout.bucket, "download", stamp, "-o", output, *(["--force"] if force else []))
        assert code == 1, (output, err)
        line = one_error(err, "-o ", f"is {what}, not a regular file")
        assert "downloading" not in err and out == "", output  # refused before the download started
        assert output in line
    # Nothing was written, replaced or left behind.
    assert {path: kind(path) for path in odd.rglob("*")} == before
    assert real.read_bytes() == b"mine" and list((folder / f"{stamp}.dump").iterdir()) == []
    assert not [path for path in odd.rglob("*.partial")]
    if device == Path("/dev/full"):
        assert stat.S_ISCHR(device.stat().st_mode)


def test_something_put_in_the_way_during_the_download_is_not_replaced(moto, layout, archive, tmp_path):
    stamp = layout.backup(timedelta(hours=1), archive)
    location = where.resolve_location(cli.parser().parse_args([
        "--endpoint", moto.url, "--region", "us-east-1", "--bucket", layout.bucket, "--prefix", "acme/",
        "--access-key", moto.access_key, "--secret-key", moto.secret_key, "list"]))
    location, entry = reference.resolve(location, stamp, check_data=False)
    target = tmp_path / "x.dump"

    class MakesAFifo(io.StringIO):
        def write(self, text):
            if not target.exists():
                os.mkfifo(target)
            return super().write(text)

    with pytest.raises(errors.BackupsError, match="is a FIFO"):
        download.download_to(location, entry, target, force=True, progress=MakesAFifo())
    assert stat.S_ISFIFO(target.lstat().st_mode)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["x.dump"]
