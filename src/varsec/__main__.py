"""``python -m varsec``: the same command line as ``varsec``."""

import sys

from varsec.cli import main

sys.exit(main())
