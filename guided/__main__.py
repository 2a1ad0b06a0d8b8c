"""``python -m guided``: the same as the ``guided`` console script."""

import sys

from guided.cli import main

sys.exit(main())
