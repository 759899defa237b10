"""``python -m cascade``: the ``cascade`` command line."""

import sys

from cascade.cli import main

sys.exit(main())
