"""Dataset buckets on the test S3 server, and stacks that point at them."""

import uuid

from support.harness import ROOT, load_stack_file
from support.servers import pod_visible_url

DEV = load_stack_file(ROOT / "Pulumi.dev.yaml")


def s3_config(moto, buckets, **changes):
    return {
        "storageProvider": "minio",
        "storageEndpoint": pod_visible_url(moto.url),
        "storageRegion": "us-east-1",
        "storageAccessKey": moto.access_key,
        "storageSecretKey": moto.secret_key,
        "datasetBuckets": buckets,
        "adminEmail": "lead@acme.example",
        "hostname": "label.acme.example",
        "kubeContext": "lab",
        "allowInsecureHttp": True,
        **changes,
    }


def new_bucket(moto, objects=None):
    name = f"data-{uuid.uuid4().hex[:10]}"
    client = moto.client()
    client.create_bucket(Bucket=name)
    for key, size in (objects or {}).items():
        client.put_object(Bucket=name, Key=key, Body=b"\0" * size)
    return name


def keys_denied(server, *buckets):
    """Keys of a new user of `server` that may use everything but these buckets."""
    import json

    import boto3.session

    iam = boto3.session.Session().client("iam", endpoint_url=server.url, region_name="us-east-1",
                                         aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key)
    user = f"limited-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    denied = [arn for bucket in buckets for arn in (f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*")]
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Effect": "Deny", "Action": "s3:*", "Resource": denied},
    ]}
    iam.put_user_policy(UserName=user, PolicyName="limited", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return {"access_key": key["AccessKeyId"], "secret_key": key["SecretAccessKey"]}
