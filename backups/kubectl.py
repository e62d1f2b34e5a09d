"""`now`: a backup Job started from the workspace's CronJob with kubectl, and followed to its end."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import timedelta
from typing import Callable, Optional, TextIO

from backups.display import human_duration
from backups.errors import BackupsError
from backups.tools import installed, json_object, last_line

CRONJOB = "database-backup"
# The reasons an operator may give (`scheduled` is the CronJob's own).
REASONS = ("manual", "final", "before-upgrade")
NOT_INSTALLED = "kubectl is not installed: `backups now` starts the backup Job with kubectl (install it, with access to the cluster)"


class Kubectl:
    """kubectl with a context and a namespace."""

    def __init__(self, namespace: str, context: Optional[str], binary: str = "kubectl"):
        if not installed(binary):
            raise BackupsError(NOT_INSTALLED)
        self.namespace, self.context, self.binary = namespace, context, binary

    def command(self, *args: str) -> list[str]:
        """The kubectl command line for `args`, in the context and namespace."""
        return [self.binary, *(["--context", self.context] if self.context else []), "--namespace", self.namespace, *args]

    def run(self, *args: str, input: Optional[str] = None, check: bool = True) -> subprocess.CompletedProcess:
        """Runs kubectl; a failure is a BackupsError with kubectl's last words, unless `check` is off."""
        result = subprocess.run(self.command(*args), capture_output=True, text=True, input=input)
        if check and result.returncode != 0:
            raise BackupsError(f"`kubectl {' '.join(args[:3])}` failed: {last_line(result.stderr) or f'exit code {result.returncode}'}")
        return result


def start_backup(kubectl: Kubectl, name: str, reason: str) -> None:
    """Creates a Job from the CronJob, with BACKUP_REASON set on every container."""
    rendered = kubectl.run("create", "job", f"--from=cronjob/{CRONJOB}", name, "--dry-run=client", "--output=json")
    job = json_object(rendered.stdout, "kubectl create job --dry-run")
    spec = job.get("spec", {}).get("template", {}).get("spec", {})
    for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
        env = [item for item in container.get("env", []) if item.get("name") != "BACKUP_REASON"]
        container["env"] = [*env, {"name": "BACKUP_REASON", "value": reason}]
    kubectl.run("create", "--filename=-", "--output=name", input=json.dumps(job))


def job_state(job: dict) -> tuple[str, str]:
    """("running" | "succeeded" | "failed", details) from a Job's status."""
    status = job.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") in ("Complete", "SuccessCriteriaMet"):
            return "succeeded", ""
        if condition.get("type") in ("Failed", "FailureTarget"):
            details = ": ".join(text for text in (condition.get("reason"), condition.get("message")) if text)
            return "failed", details
    active, failed = int(status.get("active") or 0), int(status.get("failed") or 0)
    details = f"{active} pod running" if active else "waiting for a pod"
    if failed:
        details += f", {failed} failed attempt(s)"
    return "running", details


def follow(kubectl: Kubectl, name: str, timeout: timedelta, poll: float, out: TextIO,
           clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
    """Waits for the Job, printing what changes; raises on failure or timeout (after printing its logs)."""
    started = clock()
    last, last_report = "", started
    while True:
        state, details = job_state(json_object(kubectl.run("get", "job", name, "--output=json").stdout, "kubectl get job"))
        elapsed = clock() - started
        if state == "succeeded":
            out.write(f"job {name} succeeded in {human_duration(timedelta(seconds=int(elapsed)))}\n")
            return
        if state == "failed":
            print_logs(kubectl, name, out)
            raise BackupsError(f"backup job {name} failed ({details}); its logs are above")
        # A line when something changes, and one a minute while nothing does.
        if details != last or clock() - last_report >= 60:
            out.write(f"job {name}: {details} ({human_duration(timedelta(seconds=int(elapsed)))})\n")
            out.flush()
            last, last_report = details, clock()
        if elapsed >= timeout.total_seconds():
            print_logs(kubectl, name, out)
            raise BackupsError(
                f"backup job {name} did not finish within {human_duration(timeout)}; it goes on in the cluster: "
                f"kubectl -n {kubectl.namespace} logs -f job/{name} --all-containers"
            )
        sleep(poll)


def print_logs(kubectl: Kubectl, name: str, out: TextIO) -> None:
    """The logs of every container of the Job, between two marker lines."""
    logs = kubectl.run("logs", f"job/{name}", "--all-containers", check=False)
    out.write(f"--- logs of job/{name} ---\n{logs.stdout or logs.stderr}".rstrip("\n") + "\n--- end of logs ---\n")
