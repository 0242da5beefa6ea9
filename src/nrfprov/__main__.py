"""``python -m nrfprov`` is the same as the ``nrfprov`` command."""

from nrfprov.cli import main

raise SystemExit(main())
