"""`python -m backups`: the operators' command (see backups/__init__.py)."""

import sys

from backups.cli import main

sys.exit(main())
