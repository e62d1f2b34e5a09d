"""components/assets/superuser.py against a real Django (CVAT's major) with a throwaway SQLite database."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "components" / "assets" / "superuser.py"
QUERY = """
import json
from django.contrib.auth import get_user_model
users = get_user_model().objects.all()
print(json.dumps([{"username": u.username, "email": u.email, "superuser": u.is_superuser, "staff": u.is_staff,
                   "hash": u.password, "password_ok": u.check_password(__import__("os").environ.get("CHECK", ""))}
                  for u in users]))
"""


@pytest.fixture
def django_project(tmp_path):
    (tmp_path / "workspace_settings.py").write_text(
        "SECRET_KEY = 'test-only'\n"
        "INSTALLED_APPS = ['django.contrib.auth', 'django.contrib.contenttypes']\n"
        f"DATABASES = {{'default': {{'ENGINE': 'django.db.backends.sqlite3', 'NAME': r'{tmp_path / 'db.sqlite3'}'}}}}\n"
        "USE_TZ = True\n"
    )
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(tmp_path), "DJANGO_SETTINGS_MODULE": "workspace_settings"}
    subprocess.run([sys.executable, "-m", "django", "migrate", "--verbosity", "0"], env=env, check=True)
    return env


def ensure(env, username="admin", email="admin@example.com", password="first-Passw0rd $(x) ';"):
    command = f"exec(open({str(SCRIPT)!r}).read())"
    environment = {**env, "ADMIN_USERNAME": username, "ADMIN_EMAIL": email, "ADMIN_PASSWORD": password}
    result = subprocess.run([sys.executable, "-m", "django", "shell", "--command", command], env=environment,
                            capture_output=True, text=True)
    assert not password or password not in result.stdout + result.stderr
    return result


def users(env, check=""):
    result = subprocess.run([sys.executable, "-m", "django", "shell", "--command", QUERY], env={**env, "CHECK": check},
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def test_creates_the_superuser(django_project):
    result = ensure(django_project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "created superuser admin"
    (user,) = users(django_project, check="first-Passw0rd $(x) ';")
    assert user["superuser"] and user["staff"] and user["password_ok"]
    assert user["email"] == "admin@example.com"


def test_second_run_changes_nothing(django_project):
    ensure(django_project)
    before = users(django_project)
    result = ensure(django_project)
    assert result.returncode == 0 and result.stdout.strip() == "superuser admin is up to date"
    assert users(django_project) == before  # not even the password hash


def test_updates_email_and_password_when_they_change(django_project):
    ensure(django_project)
    result = ensure(django_project, email="lead@acme.example")
    assert result.stdout.strip() == "updated superuser admin: e-mail"
    result = ensure(django_project, email="lead@acme.example", password="second-Passw0rd")
    assert result.stdout.strip() == "updated superuser admin: password"
    (user,) = users(django_project, check="second-Passw0rd")
    assert user["password_ok"] and user["email"] == "lead@acme.example"


def test_restores_the_admin_rights_of_a_demoted_user(django_project):
    ensure(django_project)
    subprocess.run([sys.executable, "-m", "django", "shell", "--command",
                    "from django.contrib.auth import get_user_model; get_user_model().objects.filter(username='admin').update(is_superuser=False, is_staff=False)"],
                   env=django_project, check=True)
    result = ensure(django_project)
    assert result.stdout.strip() == "updated superuser admin: is_superuser, is_staff"
    assert users(django_project)[0]["superuser"]


def test_missing_credentials_fail(django_project):
    result = ensure(django_project, password="")
    assert result.returncode != 0 and "ADMIN_PASSWORD not set" in result.stderr
    assert users(django_project) == []
