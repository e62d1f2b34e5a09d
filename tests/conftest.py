"""Shared test setup: import paths, the servers the integration tests use, the test tiers.

Tiers (markers registered in pytest.ini):
- `integration`: needs a real server (PostgreSQL, the S3 server, restic, Django) or runs the
  pod scripts. Given here to every test that uses a server fixture (SERVER_FIXTURES), and by
  `pytestmark` in the modules of the pod scripts. A test without it that starts or uses a server
  fails (servers.uses): the fast tier, `-m "not integration and not slow"`, starts none.
- `slow`: property-based tests (Hypothesis, found here), the seeded simulations and the
  benchmarks, time and memory (SLOW_MODULES).

Hypothesis profiles, chosen by the variable HYPOTHESIS_PROFILE (test.sh sets it):
- `ci`: Hypothesis's own CI profile (derandomized, no example database, no deadline), every
  test with its own number of examples: the whole suite, as CI runs it;
- `quick`: at most QUICK_EXAMPLES examples a test, for the loop while working.
Without the variable, Hypothesis chooses (its `ci` profile when CI is set, else its default).
"""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


from support import servers  # noqa: E402  (after the path set-up)
from support.servers import TEST_S3_HOST, MotoServer, PostgresServer, free_port  # noqa: E402

__all__ = ["free_port"]

pytest_plugins = ["pytester"]  # test_tiers runs small suites under this conftest's rules

# Fixtures that are, or start, a real server (or Django): a test that uses one is `integration`.
SERVER_FIXTURES = frozenset({"moto", "moto_with_auth", "s3_server", "postgres", "restic", "django_project"})
# Modules that are benchmarks or simulations as a whole: `slow`.
SLOW_MODULES = frozenset({
    "test_benchmarks",  # the benchmarks' commands, on small inputs
    "test_audit_memory",  # the memory goal, measured on exports of 20 MB and by the memory benchmark
    "test_audit_simulation",  # false-positive rate and power, on seeded simulations of whole reports
})
QUICK_EXAMPLES = 10
# The folders of tests, those whose tests take longest first (a test's own order is kept within them).
FOLDERS_LONGEST_FIRST = ("pod_scripts", "program", "backups_command", "dataset_audit", "project")


def _register_hypothesis_profiles() -> None:
    from hypothesis import settings

    settings.register_profile("ci", parent=settings.get_profile("ci"))
    settings.register_profile("quick", parent=settings.get_profile("ci"), max_examples=QUICK_EXAMPLES)
    profile = os.environ.get("HYPOTHESIS_PROFILE")
    if profile:
        settings.load_profile(profile)


_register_hypothesis_profiles()


def _take_ctrl_c_back() -> None:
    """A runner started in the background (`./test.sh &` in a shell without job control, some CI
    launchers) ignores SIGINT, and so would every process the tests start: Python then installs no
    KeyboardInterrupt handler and a shell cannot trap the signal, so a test that interrupts a
    command would see it run on. The tests get what a terminal gives: Python's own handler here,
    and the default, after exec, in every process they start (workers included)."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


_take_ctrl_c_back()


def pytest_collection_finish(session):
    """Collects garbage less often: the program under mocks makes hundreds of thousands of
    short-lived objects a rendering, and every full collection walks the heap of everything the
    suite imported (pulumi, boto3, scipy, pandas). Frozen, that heap is not walked; with a larger
    first threshold, the renderings take about 40 % less time. Nothing tested depends on when
    garbage is collected."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def pytest_collection_modifyitems(config, items):
    """Marks the tiers: `integration` by the fixtures a test uses, `slow` for Hypothesis tests and
    SLOW_MODULES; under the `quick` profile, caps the examples of Hypothesis tests that set their own."""
    from hypothesis import is_hypothesis_test

    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
        module = getattr(item, "module", None)
        if module is not None and module.__name__.rsplit(".", 1)[-1] in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
        function = getattr(item, "obj", None)
        if function is not None and is_hypothesis_test(function):
            item.add_marker(pytest.mark.slow)
            _cap_examples(function)
    # The longest first, so that the workers end together: their tests are shared out in this order,
    # and a worker out of tests takes half of what another has left (worksteal).
    items.sort(key=_folder_rank)


def _folder_rank(item) -> int:
    """Where a test's folder stands in FOLDERS_LONGEST_FIRST (after them all if it is not there)."""
    folder = Path(str(item.fspath)).parent.name
    return FOLDERS_LONGEST_FIRST.index(folder) if folder in FOLDERS_LONGEST_FIRST else len(FOLDERS_LONGEST_FIRST)


def _cap_examples(function) -> None:
    """A test's own @settings(max_examples=...) outranks a profile: under `quick`, it is capped."""
    from hypothesis import settings

    if os.environ.get("HYPOTHESIS_PROFILE") != "quick":
        return
    # Where @settings leaves them on a @given test, read when the test runs (hypothesis core.py).
    own = getattr(function, "_hypothesis_internal_use_settings", None)
    if own is not None and own.max_examples > QUICK_EXAMPLES:
        function._hypothesis_internal_use_settings = settings(own, max_examples=QUICK_EXAMPLES)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Each test's server uses are counted from its own setup to its end (servers.uses)."""
    servers.uses.clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test not marked `integration` that started or used a server fails, naming the server."""
    outcome = yield
    report = outcome.get_result()
    if call.when != "call" or not servers.uses or item.get_closest_marker("integration"):
        return
    used = ", ".join(sorted(set(servers.uses)))
    servers.uses.clear()
    report.outcome = "failed"
    report.longrepr = (f"{item.nodeid} started or used {used} but is not marked `integration`: mark it "
                       "(pytest.mark.integration), or use the server through a fixture of conftest.SERVER_FIXTURES")




@pytest.fixture(scope="session", autouse=True)
def test_s3_host_resolves_to_loopback():
    """Names under TEST_S3_HOST resolve to 127.0.0.1 in this process (the program's preflight runs here)."""
    import socket

    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and (host == TEST_S3_HOST or host.endswith("." + TEST_S3_HOST)):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    yield
    socket.getaddrinfo = real




@pytest.fixture(scope="session")
def moto():
    """A real S3-compatible HTTP server (moto's server mode) on loopback, for the whole run."""
    server = MotoServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server(moto):
    return moto.url


@pytest.fixture(scope="session")
def moto_with_auth():
    """An S3 server that checks signatures: wrong keys are refused."""
    server = MotoServer(authenticated=True)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL 15 server on loopback, for the whole run."""
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture
def s3_settings(moto):
    """Client settings for the test server."""
    return moto.settings()


@pytest.fixture
def s3(moto):
    """A boto3 client for the test server, built like the program builds its own."""
    return moto.client()


@pytest.fixture
def bucket(s3, request):
    """A fresh, empty bucket on the test server."""
    import uuid

    name = f"test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name
