"""S3Endpoint: where the workspace's object storage is and how to talk to it.

One object knows the provider (Scaleway or MinIO), region, URL and
credentials, and builds the clients that suit S3-compatible servers: the
explicit ``aws.Provider`` for Pulumi resources, a boto3 client for code that
runs on the user's machine (dynamic providers, preflight), and the environment
for the AWS CLI in pods.

It is built once: from the config by the storage section
(``config.storage.endpoint``, components/config/sections.py), or, for the
in-cluster MinIO of the development stack, from that server's outputs by the
Workspace. Everything else takes that object; nothing works the URL out again.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any, Optional

import pulumi

# The official AWS CLI image, for pods that talk to the object storage.
AWS_CLI_IMAGE = "amazon/aws-cli:2.32.6"
# Scaleway caps multipart uploads at 1000 parts: 64 MiB parts allow ~64 GB objects.
MULTIPART_CHUNK_SIZE = 64 * 1024 * 1024

# boto3 >= 1.36 sends CRC checksums by default, which several S3-compatible
# servers reject; these settings (and their environment twins) turn that off.
CHECKSUM_ENV = {
    "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
    "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
}


def scaleway_endpoint_url(region: str) -> str:
    """The Object Storage URL of a Scaleway region."""
    return f"https://s3.{region}.scw.cloud"


def endpoint_url(provider: str, region: str, endpoint: str) -> str:
    """The configured endpoint, or Scaleway's for the region; "" for a MinIO without one."""
    endpoint = endpoint.rstrip("/")
    if not endpoint and provider == "scaleway":
        return scaleway_endpoint_url(region)
    return endpoint


@dataclass(frozen=True)
class S3Endpoint:
    """An S3-compatible endpoint: Scaleway Object Storage or a MinIO server.

    ``url`` is the URL as seen by whoever uses it: for an in-cluster MinIO it
    is the Service's cluster-internal address, reachable from pods only.
    """

    provider: str
    region: str
    url: pulumi.Input[str]
    access_key: pulumi.Input[str]
    secret_key: pulumi.Input[str]
    in_cluster: bool = False

    @staticmethod
    def from_settings(
        provider: str,
        region: str,
        endpoint: pulumi.Input[str],
        access_key: pulumi.Input[str],
        secret_key: pulumi.Input[str],
        in_cluster: bool = False,
    ) -> "S3Endpoint":
        """Builds the endpoint; an empty Scaleway endpoint is derived from the region."""
        if isinstance(endpoint, str):
            endpoint = endpoint_url(provider, region, endpoint)
            if not endpoint:
                raise ValueError("a MinIO endpoint needs a URL")
        return S3Endpoint(
            provider=provider,
            region=region,
            url=endpoint,
            access_key=access_key,
            secret_key=pulumi.Output.secret(secret_key),
            in_cluster=in_cluster,
        )

    @property
    def reachable_from_program(self) -> bool:
        """Whether `pulumi up` on the user's machine can reach this endpoint."""
        return not self.in_cluster

    def program_client(self, secret_key: str, attempts: int = 3) -> Any:
        """A boto3 client for code that runs with the program (the preflight).

        ``secret_key`` is the plain secret key: this object holds it only as a secret
        Output. Only for an endpoint the program reaches, whose URL and access key are
        plain strings (one built from the config).
        """
        if self.in_cluster or not isinstance(self.url, str) or not isinstance(self.access_key, str):
            raise ValueError("only an endpoint built from the config is reachable from the Pulumi program")
        return s3_client(self.url, self.region, self.access_key, secret_key, attempts=attempts)

    def aws_provider(self, name: str, opts: Optional[pulumi.ResourceOptions] = None):
        """The explicit pulumi-aws provider, configured for an S3-compatible server."""
        import pulumi_aws as aws

        if self.in_cluster:
            raise ValueError("an in-cluster endpoint is not reachable from the Pulumi program")
        return aws.Provider(
            name,
            region=self.region,
            access_key=self.access_key,
            secret_key=self.secret_key,
            endpoints=[aws.ProviderEndpointArgs(s3=self.url)],
            s3_use_path_style=True,
            skip_credentials_validation=True,
            skip_requesting_account_id=True,
            skip_metadata_api_check=True,
            skip_region_validation=True,
            # Should a server's region be us-east-1, keeps it from being rewritten
            # to the pseudo region aws-global, which S3-compatible servers reject.
            s3_us_east1_regional_endpoint="regional",
            opts=opts,
        )

    def client_settings(self) -> pulumi.Output[dict]:
        """Settings for :func:`s3_client`, as an Output (the keys stay secret)."""
        return pulumi.Output.all(self.url, self.access_key, self.secret_key).apply(
            lambda values: {
                "endpoint_url": values[0],
                "region": self.region,
                "access_key": values[1],
                "secret_key": values[2],
            }
        )

    def connection_inputs(self) -> dict[str, pulumi.Input[str]]:
        """What a dynamic resource needs to reach this endpoint with boto3 (see client_from_inputs).

        The keys are secret; a resource that returns them among its outputs must list
        CONNECTION_SECRETS in additional_secret_outputs.
        """
        return {
            "endpoint_url": self.url,
            "region": self.region,
            "access_key": pulumi.Output.secret(self.access_key),
            "secret_key": pulumi.Output.secret(self.secret_key),
        }

    def cli_environment(self) -> dict[str, pulumi.Input[str]]:
        """Plain (non-secret) environment for the AWS CLI in a pod.

        Credentials are not here: pods read them from a Secret via secretKeyRef.
        """
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_DEFAULT_REGION": self.region,
            **CHECKSUM_ENV,
        }


# The secret keys among S3Endpoint.connection_inputs().
CONNECTION_SECRETS = ["access_key", "secret_key"]


def client_from_inputs(props: dict) -> Any:
    """A boto3 client from a dynamic resource's connection inputs."""
    return s3_client(props["endpoint_url"], props["region"], props["access_key"], props["secret_key"])


def client_config(attempts: int = 3) -> Any:
    """botocore settings for S3-compatible servers: path style, checksums only when required."""
    from botocore.config import Config

    return Config(
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"max_attempts": attempts, "mode": "standard"},
        connect_timeout=10 if attempts > 1 else 5,
        read_timeout=60,
    )


def s3_client(endpoint_url: str, region: str, access_key: str, secret_key: str, attempts: int = 3) -> Any:
    """A boto3 S3 client for an S3-compatible server.

    Besides path-style addressing and the `when_required` checksum settings,
    it adds the Content-MD5 header that several servers still demand on
    requests that carry a checksum-required body (lifecycle, bulk delete),
    which boto3 >= 1.36 no longer sends.

    Each call builds its client from a new ``boto3.session.Session``:
    ``boto3.client`` shares one default session, and sessions are not
    thread-safe, while the dynamic provider host serves requests on several
    threads at once.
    """
    import boto3.session

    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=client_config(attempts),
    )
    for operation in ("PutBucketLifecycleConfiguration", "DeleteObjects"):
        client.meta.events.register(f"before-sign.s3.{operation}", _add_content_md5)
    return client


def _add_content_md5(request: Any, **_: Any) -> None:
    body = request.body or b""
    if isinstance(body, str):
        body = body.encode()
    if isinstance(body, (bytes, bytearray)) and "Content-MD5" not in request.headers:
        request.headers["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()
