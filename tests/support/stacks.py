"""The stack configs the program's tests share: a valid Scaleway stack, a change of it, and the problems a config stops with."""

from components.config import ConfigError
from support.harness import render_failure

SCALEWAY = {
    "storageProvider": "scaleway",
    "storageAccessKey": "SCWABCDEFGHIJKLMNOPQ",
    "storageSecretKey": "scaleway-secret-key-value",
    "datasetBuckets": ["acme-images"],
    "adminEmail": "lead@acme.example",
    "hostname": "label.acme.example",
    "kubeContext": "scw-acme",
    # Most tests look at plain-http rendering; TLS has tests of its own.
    "allowInsecureHttp": True,
}

SECRETS = ["storageSecretKey"]


def problems_of(config, secrets=SECRETS, stack="acme"):
    """The (key, reason) problems the program stops with, after checking nothing was registered."""
    error, registrations = render_failure(config, stack=stack, secrets=secrets)
    assert isinstance(error, ConfigError), error
    assert registrations == [], "resources were registered before the config was validated"
    return error.problems, str(error)


def keys_of(config, **kwargs):
    return {key for key, _ in problems_of(config, **kwargs)[0]}


def with_(**changes):
    config = dict(SCALEWAY)
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return config

ADMIN_SECRETS = SECRETS + ["adminPassword"]


def only_problem(config, key, secrets=SECRETS):
    problems, message = problems_of(config, secrets=secrets)
    assert {bad for bad, _ in problems} == {key}, message
    return message

STACK_OUTPUTS = {
    "annotationUrl",
    "adminUsername",
    "adminEmail",
    "adminPassword",
    "namespace",
    "datasetBuckets",
    "datasets",
    "backupBucket",
    "backupPrefix",
    "backupSchedule",
    "backupRetentionDays",
    "cvatVersion",
    "description",
    "status",
}
