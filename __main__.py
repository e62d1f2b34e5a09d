"""A labeling workspace: CVAT on Kubernetes with S3 datasets and backups.

Wiring only: load the stack config, check over the network what must hold
before anything is created (components/preflight.py), build the workspace,
export its outputs.
"""

import pulumi

from components.config import load_config
from components.preflight import check_backup_bucket, check_dataset_buckets
from components.workspace import Workspace, WorkspaceArgs

config = load_config()
check_dataset_buckets(config)
# A configured backup bucket that already exists (kept by an earlier destroy) is adopted, not created.
adopt_backup_bucket = check_backup_bucket(config)
workspace = Workspace("workspace", WorkspaceArgs(config=config, adopt_backup_bucket=adopt_backup_bucket))
for key, value in workspace.outputs.items():
    pulumi.export(key, value)
