"""``python -m fusionlang`` is the same as the ``fusionc`` command."""

from .cli import main

raise SystemExit(main())
