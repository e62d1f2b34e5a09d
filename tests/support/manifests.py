"""Every rendered Kubernetes object checked against the Kubernetes OpenAPI schema of the version the program supports."""

import kubernetes_validate
import pytest

# The oldest Kubernetes minor the workspace supports; objects must validate there.
KUBERNETES_VERSION = "1.30.0"


def validate_rendering(rendering):
    """Fails the test on the first object the Kubernetes schema refuses."""
    for registration in rendering.kubernetes_objects():
        manifest = registration.manifest()
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{manifest['kind']} {manifest['metadata'].get('name')}: {error.message} at {list(error.path)}")
