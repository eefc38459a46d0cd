"""``python -m physdiff.cli ...``: the ``physdiff`` command."""

import sys

from . import main

sys.exit(main())
