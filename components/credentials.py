"""AdminCredentials: the CVAT superuser's username, e-mail and password.

The password comes from the stack config (a secret) or is generated once with
pulumi-random and kept in the state, so it stays the same across updates. The
credentials are stored in a Kubernetes Secret for the superuser step to read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, TypedDict

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import kube
from components.config import AdminConfig

SECRET_NAME = "admin-credentials"
GENERATED_PASSWORD_LENGTH = 24


@dataclass(frozen=True)
class AdminLogin:
    """The admin's login as the other components use it: the values, and the Secret that holds
    them (keys username, email, password), which their pods read."""

    username: pulumi.Output[str]
    email: pulumi.Output[str]
    password: pulumi.Output[str]
    secret_name: pulumi.Output[str]


class AdminCredentialsArgs(TypedDict):
    """Inputs of :class:`AdminCredentials`."""

    namespace: pulumi.Input[str]
    workspace: str
    admin: AdminConfig
    """The configured username and e-mail, and the password (None: generated once)."""


class AdminCredentials(pulumi.ComponentResource):
    """The admin login of a workspace, kept in a Secret (keys username, email, password)."""

    username: pulumi.Output[str]
    email: pulumi.Output[str]
    password: pulumi.Output[str]
    secret_name: pulumi.Output[str]
    login: AdminLogin

    def __init__(self, name: str, args: AdminCredentialsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("labeling:index:AdminCredentials", name, None, opts)
        admin = args["admin"]
        password: pulumi.Input[str]
        if admin.password is not None:
            password = admin.password
        else:
            # Letters, digits and a few symbols that survive shells, URLs and copy-paste.
            generated = random.RandomPassword(
                f"{name}-password",
                length=GENERATED_PASSWORD_LENGTH,
                special=True,
                override_special="-_.+=@%",
                min_lower=2,
                min_upper=2,
                min_numeric=2,
                min_special=1,
                opts=pulumi.ResourceOptions(parent=self),
            )
            password = generated.result
        secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata={
                "name": SECRET_NAME,
                "namespace": args["namespace"],
                "labels": kube.labels(args["workspace"], "admin-credentials"),
            },
            type="Opaque",
            string_data={
                "username": admin.username,
                "email": admin.email,
                "password": pulumi.Output.secret(password),
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.username = pulumi.Output.from_input(admin.username)
        self.email = pulumi.Output.from_input(admin.email)
        self.password = pulumi.Output.secret(password)
        self.secret_name = secret.metadata["name"]
        self.login = AdminLogin(self.username, self.email, self.password, self.secret_name)
        self.register_outputs(
            {
                "username": self.username,
                "email": self.email,
                "password": self.password,
                "secret_name": self.secret_name,
            }
        )
