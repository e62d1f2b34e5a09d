"""AdminCredentials: the CVAT superuser's username, e-mail and password.

The password comes from the stack config (a secret) or is generated once with
pulumi-random and kept in the state, so it stays the same across updates. The
credentials are stored in a Kubernetes Secret for the superuser step to read.
"""

from __future__ import annotations

from typing import Optional, TypedDict

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import kube

SECRET_NAME = "admin-credentials"
GENERATED_PASSWORD_LENGTH = 24


class AdminCredentialsArgs(TypedDict):
    """Inputs of :class:`AdminCredentials`."""

    namespace: pulumi.Input[str]
    workspace: str
    username: str
    email: str
    password: Optional[pulumi.Input[str]]


class AdminCredentials(pulumi.ComponentResource):
    """The admin login of a workspace, kept in a Secret (keys username, email, password)."""

    username: pulumi.Output[str]
    email: pulumi.Output[str]
    password: pulumi.Output[str]
    secret_name: pulumi.Output[str]

    def __init__(self, name: str, args: AdminCredentialsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("labeling:index:AdminCredentials", name, None, opts)
        password = args["password"]
        if password is None:
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
                "username": args["username"],
                "email": args["email"],
                "password": pulumi.Output.secret(password),
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.username = pulumi.Output.from_input(args["username"])
        self.email = pulumi.Output.from_input(args["email"])
        self.password = pulumi.Output.secret(password)
        self.secret_name = secret.metadata["name"]
        self.register_outputs(
            {
                "username": self.username,
                "email": self.email,
                "password": self.password,
                "secret_name": self.secret_name,
            }
        )
