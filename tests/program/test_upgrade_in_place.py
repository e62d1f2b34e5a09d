"""Existing stacks upgrade in place: no claim, StatefulSet, volume, bucket or generated secret changes URN.

`data/stable_urns.json` was taken from the program before the contract fixes
(issue 8), for the dev, Scaleway and external-MinIO stacks. A resource whose
URN changes is deleted and created again by the engine: for a claim that is
its data, for a generated password a database that no longer opens.
"""

import json

import pytest

from support.harness import ROOT, render

BEFORE = json.loads((ROOT / "tests" / "data" / "stable_urns.json").read_text())
STATEFUL_TYPES = (
    "kubernetes:core/v1:PersistentVolumeClaim",
    "kubernetes:apps/v1:StatefulSet",
    "kubernetes:core/v1:PersistentVolume",
    "aws:s3/bucket:Bucket",
    "kubernetes:core/v1:Namespace",
    "pulumi-python:dynamic/labeling:BucketLifecycleRules",
)


@pytest.mark.parametrize("shape", sorted(BEFORE))
def test_stateful_resources_keep_their_urns(shape):
    before = BEFORE[shape]
    config = dict(before["config"])
    if not config.get("minioInCluster"):
        config["kubeContext"] = "the-cluster"  # required since; the same cluster as before
        if not (config.get("certManagerIssuer") or config.get("tlsSecretName")):
            config["allowInsecureHttp"] = True  # required since for plain http
    rendering = render(config, stack=before["stack"], secrets=before["secrets"])
    now = {r.urn for r in rendering.registrations if r.type in STATEFUL_TYPES or r.type.startswith("random:")}
    missing = sorted(set(before["urns"]) - now)
    assert not missing, f"these would be replaced (data lost or secrets regenerated): {missing}"
