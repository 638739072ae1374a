"""``python -m populace`` (e.g. under ``torchrun ... -m populace run ...``): the ``populace`` command."""

import sys

from .program import main

sys.exit(main())
