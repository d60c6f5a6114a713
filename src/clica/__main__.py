"""``python -m clica``: the ``clica`` command (also what ``torchrun ... -m clica`` runs)."""

import sys

from .cli import main

sys.exit(main())
