"""`backups now`: a stand-in kubectl on PATH plays the cluster (success, failure, timeout, errors)."""

from __future__ import annotations

import io
import json
import os
import sys

import pytest

from backups import cli
from backups.kubectl import job_state
from support.backups_command import fake_pulumi, only_one_line

FAKE_KUBECTL = r'''#!{python}
"""A kubectl stand-in: FAKE_KUBECTL_DIR/mode says how the Job goes; every call is logged."""
import json, os, sys
state = os.environ["FAKE_KUBECTL_DIR"]
mode = open(os.path.join(state, "mode")).read().strip()
args = sys.argv[1:]
with open(os.path.join(state, "calls"), "a") as log:
    log.write(json.dumps(args) + "\n")
rest = list(args)
for flag in ("--context", "--namespace"):
    if flag in rest:
        index = rest.index(flag)
        del rest[index:index + 2]
if rest[:2] == ["create", "job"]:
    if mode == "no-cronjob":
        sys.stderr.write('Error from server (NotFound): cronjobs.batch "database-backup" not found\n')
        sys.exit(1)
    assert "--dry-run=client" in rest and "--from=cronjob/database-backup" in rest, rest
    name = rest[2]
    env = [{"name": "BACKUP_REASON", "value": "scheduled"}, {"name": "BACKUP_PREFIX", "value": "acme/database/"}]
    print(json.dumps({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
                      "spec": {"template": {"spec": {
                          "initContainers": [{"name": "dump", "image": "postgres:15", "env": list(env)}],
                          "containers": [{"name": "upload", "image": "amazon/aws-cli", "env": list(env)}]}}}}))
elif rest[:1] == ["create"]:
    assert "--filename=-" in rest, rest
    job = json.load(sys.stdin)
    with open(os.path.join(state, "created.json"), "w") as created:
        json.dump(job, created)
    print("job.batch/" + job["metadata"]["name"])
elif rest[:2] == ["get", "job"]:
    polls_file = os.path.join(state, "polls")
    polls = int(open(polls_file).read()) + 1 if os.path.exists(polls_file) else 1
    open(polls_file, "w").write(str(polls))
    status = {"active": 1}
    if mode == "success" and polls >= 3:
        status = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
    if mode == "failure" and polls == 2:
        status = {"active": 1, "failed": 1}
    if mode == "failure" and polls >= 3:
        status = {"failed": 2, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                               "message": "Job has reached the specified backoff limit"}]}
    print(json.dumps({"metadata": {"name": rest[2]}, "status": status}))
elif rest[:1] == ["logs"]:
    assert rest[1].startswith("job/") and "--all-containers" in rest, rest
    print("dumping database cvat from database ...")
    print("error: pg_dump failed; nothing was uploaded")
else:
    sys.stderr.write("unexpected: %r\n" % (args,))
    sys.exit(2)
'''


@pytest.fixture
def kubectl(tmp_path, monkeypatch):
    """Puts the stand-in first on PATH; returns (set_mode, calls, created job)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "kubectl"
    script.write_text(FAKE_KUBECTL.replace("{python}", sys.executable))
    script.chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_KUBECTL_DIR", str(state))

    class Fake:
        def mode(self, mode: str) -> None:
            (state / "mode").write_text(mode)

        def calls(self) -> list[list[str]]:
            path = state / "calls"
            return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

        def created(self) -> dict:
            return json.loads((state / "created.json").read_text())

    return Fake()


def now(*args, run=None):
    out, err = io.StringIO(), io.StringIO()
    kwargs = {"run": run} if run else {}
    code = cli.main(["now", "--poll", "0.01", *args], out, err, **kwargs)
    return code, out.getvalue(), err.getvalue()


def test_now_starts_the_cronjob_as_a_manual_job_and_follows_it(kubectl):
    kubectl.mode("success")
    code, out, err = now("--namespace", "cvat-acme", "--context", "prod", "--name", "backup-test", "--timeout", "60s")
    assert code == 0, err
    assert err == ""
    calls = kubectl.calls()
    assert calls[0] == ["--context", "prod", "--namespace", "cvat-acme", "create", "job", "--from=cronjob/database-backup",
                        "backup-test", "--dry-run=client", "--output=json"]
    assert calls[1] == ["--context", "prod", "--namespace", "cvat-acme", "create", "--filename=-", "--output=name"]
    assert all(call[:4] == ["--context", "prod", "--namespace", "cvat-acme"] for call in calls)
    assert sum(1 for call in calls if call[4:6] == ["get", "job"]) == 3
    # BACKUP_REASON=manual on every container, replacing the CronJob's own value; other env kept.
    spec = kubectl.created()["spec"]["template"]["spec"]
    for container in spec["initContainers"] + spec["containers"]:
        reasons = [item["value"] for item in container["env"] if item["name"] == "BACKUP_REASON"]
        assert reasons == ["manual"] and {"name": "BACKUP_PREFIX", "value": "acme/database/"} in container["env"]
    lines = out.splitlines()
    assert lines[0] == "started job/backup-test from cronjob/database-backup (namespace cvat-acme, context prod), reason manual"
    assert "job backup-test: 1 pod running" in lines[1]
    assert lines[-2].startswith("job backup-test succeeded in ")
    assert not any(call[4] == "logs" for call in calls)


def test_a_failed_backup_prints_its_logs_and_exits_non_zero(kubectl):
    kubectl.mode("failure")
    code, out, err = now("--namespace", "cvat-acme", "--reason", "final", "--name", "backup-final", "--timeout", "60s")
    assert code == 1
    only_one_line(err, "backup job backup-final failed (BackoffLimitExceeded: Job has reached the specified backoff limit)")
    assert "1 pod running, 1 failed attempt(s)" in out
    assert "--- logs of job/backup-final ---\ndumping database cvat from database ...\nerror: pg_dump failed" in out
    assert ["--namespace", "cvat-acme", "logs", "job/backup-final", "--all-containers"] in kubectl.calls()
    assert "kind-" not in json.dumps(kubectl.calls()) and "--context" not in kubectl.calls()[0]
    env = kubectl.created()["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "BACKUP_REASON", "value": "final"} in env


def test_a_backup_that_does_not_finish_in_time(kubectl):
    kubectl.mode("running")
    code, out, err = now("--namespace", "cvat-acme", "--timeout", "1s", "--name", "backup-slow")
    assert code == 1
    only_one_line(err, "backup job backup-slow did not finish within 1s", "kubectl -n cvat-acme logs -f job/backup-slow")
    assert "--- logs of job/backup-slow ---" in out


def test_namespace_and_context_come_from_the_stack(kubectl):
    kubectl.mode("success")
    outputs = {"namespace": "cvat-acme", "backupBucket": "b", "backupPrefix": "acme/database/"}
    calls = []
    code, out, err = now(run=fake_pulumi(outputs, {"kubeContext": "admin@prod"}, calls))
    assert code == 0, err
    assert kubectl.calls()[0][:4] == ["--context", "admin@prod", "--namespace", "cvat-acme"]
    name = kubectl.calls()[0][7]
    assert name.startswith("backup-manual-") and len(name) <= 63
    # Only the stack's outputs and plain config are read: no secrets are shown for `now`.
    assert all("--show-secrets" not in call for call in calls)
    # A context given on the command line wins over the stack's.
    before = len(kubectl.calls())
    code, _, err = now("--context", "other", run=fake_pulumi(outputs, {"kubeContext": "admin@prod"}))
    assert code == 0, err
    assert all(call[:4] == ["--context", "other", "--namespace", "cvat-acme"] for call in kubectl.calls()[before:])


def test_cluster_errors_are_one_error_line(kubectl, monkeypatch, tmp_path):
    kubectl.mode("no-cronjob")
    code, _, err = now("--namespace", "cvat-acme")
    assert code == 1
    only_one_line(err, "`kubectl create job --from=cronjob/database-backup` failed", 'cronjobs.batch "database-backup" not found')
    code, _, err = now(run=fake_pulumi({"backupBucket": "b"}, {}))
    assert code == 1
    only_one_line(err, "no namespace output")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code, _, err = now("--namespace", "cvat-acme")
    assert code == 1
    only_one_line(err, "kubectl is not installed")


def test_job_states():
    assert job_state({}) == ("running", "waiting for a pod")
    assert job_state({"status": {"active": 1}}) == ("running", "1 pod running")
    assert job_state({"status": {"conditions": [{"type": "Complete", "status": "True"}]}})[0] == "succeeded"
    assert job_state({"status": {"conditions": [{"type": "Failed", "status": "False"}], "active": 1}})[0] == "running"
    failed = {"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}}
    assert job_state(failed) == ("failed", "DeadlineExceeded")


def test_ctrl_c_leaves_the_job_running_and_says_how_to_follow_it(kubectl):
    kubectl.mode("running")

    class CtrlC(io.StringIO):
        def write(self, text):
            if "pod running" in text:
                raise KeyboardInterrupt
            return super().write(text)

    err = io.StringIO()
    code = cli.main(["now", "--namespace", "cvat-acme", "--name", "backup-x", "--poll", "0.01"], CtrlC(), err)
    assert code == 130
    only_one_line(err.getvalue(), "interrupted; the job goes on in the cluster: kubectl -n cvat-acme logs -f job/backup-x")
    assert not any(call[2:4] == ["delete", "job"] for call in kubectl.calls())
