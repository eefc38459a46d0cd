"""``python -m validation ...``: see :mod:`validation.cli`."""

from .cli import main

raise SystemExit(main())
