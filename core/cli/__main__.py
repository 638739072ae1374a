"""``python -m populace.cli``: the ``populace`` command."""

import sys

from . import main

sys.exit(main())
