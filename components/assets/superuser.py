"""Creates the CVAT superuser, or brings it in line with the workspace's credentials.

Run inside the backend image after the migrations:
    django-admin shell --command "exec(open('/scripts/superuser.py').read())"
It reads ADMIN_USERNAME, ADMIN_EMAIL and ADMIN_PASSWORD from the environment
(the password comes from a Secret) and never prints the password. Idempotent:
a second run with the same credentials changes nothing.
"""

import os
import sys

from django.contrib.auth import get_user_model
from django.db import transaction


def ensure_superuser(username: str, email: str, password: str) -> str:
    """Creates or updates the superuser; returns what was done, in words."""
    users = get_user_model()
    with transaction.atomic():
        user = users.objects.select_for_update().filter(username=username).first()
        if user is None:
            users.objects.create_superuser(username=username, email=email, password=password)
            return f"created superuser {username}"
        changed = []
        if user.email != email:
            user.email = email
            changed.append("e-mail")
        if not user.check_password(password):
            user.set_password(password)
            changed.append("password")
        for flag in ("is_superuser", "is_staff", "is_active"):
            if not getattr(user, flag):
                setattr(user, flag, True)
                changed.append(flag)
        if not changed:
            return f"superuser {username} is up to date"
        user.save()
        return f"updated superuser {username}: {', '.join(changed)}"


def main() -> None:
    missing = [name for name in ("ADMIN_USERNAME", "ADMIN_EMAIL", "ADMIN_PASSWORD") if not os.environ.get(name)]
    if missing:
        sys.exit(f"error: {', '.join(missing)} not set")
    print(ensure_superuser(os.environ["ADMIN_USERNAME"], os.environ["ADMIN_EMAIL"], os.environ["ADMIN_PASSWORD"]))


main()
