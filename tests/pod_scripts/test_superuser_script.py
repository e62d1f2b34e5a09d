"""components/assets/superuser.py against a real Django (CVAT's major) with a throwaway SQLite database."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Runs the pod script in a real Django (conftest: the tiers).
pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "components" / "assets" / "superuser.py"
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
    # A stand-in for CVAT's personal access tokens (cvat.apps.access_tokens: owner, revoked).
    app = tmp_path / "access_tokens"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "models.py").write_text(
        "from django.conf import settings\nfrom django.db import models\n\n"
        "class AccessToken(models.Model):\n"
        "    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)\n"
        "    revoked = models.BooleanField(default=False)\n"
    )
    (tmp_path / "workspace_settings.py").write_text(
        "SECRET_KEY = 'test-only'\n"
        "INSTALLED_APPS = ['django.contrib.auth', 'django.contrib.contenttypes', 'rest_framework', "
        "'rest_framework.authtoken', 'access_tokens']\n"
        f"DATABASES = {{'default': {{'ENGINE': 'django.db.backends.sqlite3', 'NAME': r'{tmp_path / 'db.sqlite3'}'}}}}\n"
        "USE_TZ = True\n"
        "DEFAULT_AUTO_FIELD = 'django.db.models.AutoField'\n"
    )
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(tmp_path), "DJANGO_SETTINGS_MODULE": "workspace_settings"}
    subprocess.run([sys.executable, "-m", "django", "migrate", "--run-syncdb", "--verbosity", "0"], env=env, check=True)
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
    assert result.stdout.strip() == "updated superuser admin: password; revoked 0 API token(s)"
    (user,) = users(django_project, check="second-Passw0rd")
    assert user["password_ok"] and user["email"] == "lead@acme.example"


def django_shell(env, command):
    return subprocess.run([sys.executable, "-m", "django", "shell", "--command", command], env=env,
                          capture_output=True, text=True, check=True).stdout


def test_never_promotes_an_account_someone_else_registered(django_project):
    # Registration is open: someone registers the admin's name before the superuser step runs.
    django_shell(django_project, "from django.contrib.auth import get_user_model; "
                 "get_user_model().objects.create_user('admin', 'intruder@evil.example', 'intruder-Passw0rd')")
    result = ensure(django_project)
    assert result.returncode != 0
    assert "exists and is not a superuser" in result.stderr and "adminUsername" in result.stderr
    (user,) = users(django_project, check="intruder-Passw0rd")
    assert not user["superuser"] and not user["staff"]
    assert user["password_ok"] and user["email"] == "intruder@evil.example"  # nothing changed


def test_a_demoted_admin_is_not_promoted_again(django_project):
    ensure(django_project)
    django_shell(django_project, "from django.contrib.auth import get_user_model; "
                 "get_user_model().objects.filter(username='admin').update(is_superuser=False, is_staff=False)")
    result = ensure(django_project)
    assert result.returncode != 0 and "not a superuser" in result.stderr
    assert not users(django_project)[0]["superuser"]


def test_a_password_reset_revokes_the_admins_tokens(django_project):
    ensure(django_project)
    django_shell(django_project, (
        "from django.contrib.auth import get_user_model\n"
        "from rest_framework.authtoken.models import Token\n"
        "from access_tokens.models import AccessToken\n"
        "admin = get_user_model().objects.get(username='admin')\n"
        "other = get_user_model().objects.create_user('annotator', 'a@example.com', 'annotator-Passw0rd')\n"
        "Token.objects.create(user=admin); Token.objects.create(user=other)\n"
        "AccessToken.objects.create(owner=admin); AccessToken.objects.create(owner=other)\n"
    ))
    count = ("from rest_framework.authtoken.models import Token\nfrom access_tokens.models import AccessToken\n"
             "print(sorted(t.user.username for t in Token.objects.all()), "
             "sorted(t.owner.username for t in AccessToken.objects.filter(revoked=False)))")
    unchanged = ensure(django_project)  # same password: tokens stay
    assert unchanged.stdout.strip() == "superuser admin is up to date"
    assert django_shell(django_project, count).strip() == "['admin', 'annotator'] ['admin', 'annotator']"
    result = ensure(django_project, password="second-Passw0rd")
    assert result.stdout.strip() == "updated superuser admin: password; revoked 2 API token(s)"
    assert django_shell(django_project, count).strip() == "['annotator'] ['annotator']"


def test_missing_credentials_fail(django_project):
    result = ensure(django_project, password="")
    assert result.returncode != 0 and "ADMIN_PASSWORD not set" in result.stderr
    assert users(django_project) == []
