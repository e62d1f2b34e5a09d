"""Creates the CVAT superuser, or brings it in line with the workspace's credentials.

Run inside the backend image after the migrations:
    django-admin shell --command "exec(open('/scripts/superuser.py').read())"
It reads ADMIN_USERNAME, ADMIN_EMAIL and ADMIN_PASSWORD from the environment
(the password comes from a Secret) and never prints the password. Idempotent:
a second run with the same credentials changes nothing.

CVAT's registration is open, so an account named like the admin may exist
that this step did not make (someone registered the name first). Such an
account is never promoted: the step fails and says what to do. When it
resets the admin's password, it also revokes the admin's API tokens (Django
ends the sessions itself: they carry a hash of the password).
"""

import os
import sys

from django.apps import apps
from django.contrib.auth import get_user_model
from django.db import transaction


class TakeoverRefused(Exception):
    """An account with the admin's name exists and is not a superuser."""


def revoke_tokens(user) -> int:
    """Deletes the user's DRF tokens and revokes CVAT's personal access tokens; returns how many."""
    revoked = 0
    if apps.is_installed("rest_framework.authtoken"):
        revoked += apps.get_model("authtoken", "Token").objects.filter(user=user).delete()[0]
    try:
        access_tokens = apps.get_model("access_tokens", "AccessToken")
    except LookupError:
        access_tokens = None
    if access_tokens is not None:
        revoked += access_tokens.objects.filter(owner=user, revoked=False).update(revoked=True)
    return revoked


def ensure_superuser(username: str, email: str, password: str) -> str:
    """Creates or updates the superuser; returns what was done, in words."""
    users = get_user_model()
    with transaction.atomic():
        user = users.objects.select_for_update().filter(username=username).first()
        if user is None:
            users.objects.create_superuser(username=username, email=email, password=password)
            return f"created superuser {username}"
        if not user.is_superuser:
            raise TakeoverRefused(
                f"an account named {username!r} exists and is not a superuser: it may have been registered by "
                "someone else, so it is not promoted. Delete or rename it (CVAT's admin panel /admin as another "
                "superuser, or `kubectl exec deploy/cvat-backend -c server -- django-admin shell`), or set "
                "another adminUsername, then run `pulumi up` again."
            )
        changed = []
        if user.email != email:
            user.email = email
            changed.append("e-mail")
        password_changed = not user.check_password(password)
        if password_changed:
            user.set_password(password)
            changed.append("password")
        for flag in ("is_staff", "is_active"):
            if not getattr(user, flag):
                setattr(user, flag, True)
                changed.append(flag)
        if not changed:
            return f"superuser {username} is up to date"
        user.save()
        message = f"updated superuser {username}: {', '.join(changed)}"
        if password_changed:
            # Whoever held the old password may hold a token made with it.
            message += f"; revoked {revoke_tokens(user)} API token(s)"
        return message


def main() -> None:
    missing = [name for name in ("ADMIN_USERNAME", "ADMIN_EMAIL", "ADMIN_PASSWORD") if not os.environ.get(name)]
    if missing:
        sys.exit(f"error: {', '.join(missing)} not set")
    try:
        print(ensure_superuser(os.environ["ADMIN_USERNAME"], os.environ["ADMIN_EMAIL"], os.environ["ADMIN_PASSWORD"]))
    except TakeoverRefused as error:
        sys.exit(f"error: {error}")


main()
