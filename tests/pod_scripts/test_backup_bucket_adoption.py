"""A kept backup bucket is adopted by a new stack: the preflight, wired through the program, against a real S3 server."""

import uuid

import pytest

from support.harness import render, render_failure
from support.dataset_buckets import s3_config
from support.stacks import SECRETS

# The program's preflight against the real S3 server (conftest: the tiers).
pytestmark = pytest.mark.integration


def bucket_registration(rendering):
    return rendering.one("aws:s3/bucket:Bucket")


def test_an_existing_backup_bucket_is_imported_not_created(moto):
    kept = f"kept-{uuid.uuid4().hex[:10]}"
    moto.shared_client().create_bucket(Bucket=kept)
    moto.shared_client().put_object(Bucket=kept, Key="acme/database/20261101T030000Z.dump", Body=b"old backup")
    rendering = render(s3_config(moto, [], backupBucket=kept), stack="acme", secrets=SECRETS, preflight=True)
    bucket = bucket_registration(rendering)
    assert bucket.import_id == kept and bucket.inputs["bucket"] == kept
    assert bucket.retain_on_delete
    # Nothing was written to it by the preflight.
    keys = [o["Key"] for o in moto.shared_client().list_objects_v2(Bucket=kept)["Contents"]]
    assert keys == ["acme/database/20261101T030000Z.dump"]


def test_a_new_backup_bucket_is_created(moto):
    rendering = render(s3_config(moto, [], backupBucket=f"new-{uuid.uuid4().hex[:10]}"), stack="acme",
                       secrets=SECRETS, preflight=True)
    assert bucket_registration(rendering).import_id == ""


def test_a_backup_bucket_these_keys_cannot_use_stops_before_anything(moto_with_auth):
    config = s3_config(moto_with_auth, [], backupBucket="someone-elses", storageSecretKey="wrong-secret-key-value")
    error, registrations = render_failure(config, stack="acme", secrets=SECRETS, preflight=True)
    assert "backupBucket" in str(error) and registrations == []
