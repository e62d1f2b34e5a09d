"""The test tiers of tests/conftest.py: what they mark, what they refuse, the Hypothesis profiles.

Each case runs a small suite in a pytest of its own under the rules of this suite's conftest
(in this process, or in a subprocess where the Hypothesis profile is chosen: profiles are
global to a process), with fixtures that stand in for the servers: the rules are what is
tested, no server is started.
"""

import signal
from pathlib import Path

import pytest

from support import servers

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent

SUITE = '''
import pytest
from hypothesis import given, settings, strategies as st

from support import servers


@pytest.fixture
def moto():
    return "a stand-in: the name is what marks a test"


@pytest.fixture
def s3(moto):
    return moto


def test_with_a_server_fixture(s3):
    pass


def test_that_starts_a_server_unmarked():
    servers.uses.append("PostgreSQL")  # as PostgresServer() records its start


@pytest.mark.integration
def test_that_starts_a_server_marked():
    servers.uses.append("PostgreSQL")


def test_plain():
    pass


CALLS = []


@settings(max_examples=500, database=None)
@given(st.integers())
def test_property(number):
    CALLS.append(number)


def test_property_examples():
    print(f"examples: {len(CALLS)}")
'''


@pytest.fixture
def suite(pytester, monkeypatch):
    """A directory with this suite's conftest and pytest.ini, and SUITE as its test module."""
    monkeypatch.setenv("PYTHONPATH", f"{TESTS}:{ROOT}")
    pytester.makeconftest((TESTS / "conftest.py").read_text())
    pytester.makeini((ROOT / "pytest.ini").read_text().replace("testpaths = tests", "testpaths = ."))
    pytester.makepyfile(test_suite=SUITE)
    return pytester


def selected(result):
    return sorted(line.split("::")[-1] for line in result.outlines if "::" in line)


def test_the_fast_tier_leaves_out_server_fixtures_properties_and_marked_tests(suite):
    result = suite.runpytest_inprocess("-m", "not integration and not slow", "--collect-only", "-q")
    assert selected(result) == ["test_plain", "test_property_examples", "test_that_starts_a_server_unmarked"]
    result = suite.runpytest_inprocess("-m", "integration", "--collect-only", "-q")
    assert selected(result) == ["test_that_starts_a_server_marked", "test_with_a_server_fixture"]
    result = suite.runpytest_inprocess("-m", "slow", "--collect-only", "-q")
    assert selected(result) == ["test_property"]


def test_a_test_that_starts_a_server_without_the_marker_fails(suite):
    try:
        result = suite.runpytest_inprocess("-m", "not slow", "-p", "no:cacheprovider")
    finally:
        servers.uses.clear()  # what the small suite recorded, not this test
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["*test_that_starts_a_server_unmarked started or used PostgreSQL but is not marked `integration`*"])


def test_an_unknown_marker_is_an_error(suite):
    suite.makepyfile(test_typo="import pytest\n\n@pytest.mark.integraton\ndef test_typo():\n    pass\n")
    result = suite.runpytest_inprocess("test_typo.py")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*'integraton' not found in `markers` configuration option*"])


@pytest.mark.parametrize("profile, examples", [("quick", 10), ("ci", 500)])
def test_the_profile_sets_the_number_of_examples(suite, monkeypatch, profile, examples):
    monkeypatch.setenv("HYPOTHESIS_PROFILE", profile)
    result = suite.runpytest_subprocess("-k", "property", "-s")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([f"*examples: {examples}*"])


CHILD_SIGNALS = '''
import subprocess
import sys


def test_a_process_started_by_a_test_gets_ctrl_c():
    shown = "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    assert subprocess.run([sys.executable, "-c", shown], capture_output=True, text=True).stdout.strip() == "True"
'''


def test_a_runner_started_ignoring_ctrl_c_still_lets_the_tests_interrupt_their_commands(suite):
    # As `./test.sh &` starts it from a shell without job control: SIGINT ignored, inherited by every child.
    suite.makepyfile(test_child_signals=CHILD_SIGNALS)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        result = suite.runpytest_subprocess("test_child_signals.py", "-p", "no:cacheprovider")
    finally:
        signal.signal(signal.SIGINT, previous)
    result.assert_outcomes(passed=1)
