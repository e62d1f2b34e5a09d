"""`python -m audit`: see `audit.cli`."""

import sys

from .cli import main

sys.exit(main())
