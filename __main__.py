"""A labeling workspace: CVAT on Kubernetes with S3 datasets and backups.

Wiring only: read and check the stack config and the dataset buckets, build
the workspace, export its outputs.
"""

import pulumi

from components.config import load_config
from components.datasets import check_dataset_buckets
from components.workspace import Workspace, WorkspaceArgs

config = load_config()
check_dataset_buckets(config)
workspace = Workspace("workspace", WorkspaceArgs(config=config))
for key, value in workspace.outputs.items():
    pulumi.export(key, value)
