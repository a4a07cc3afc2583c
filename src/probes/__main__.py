"""``python -m probes``: the same as the ``probes`` command."""

import sys

from probes.cli.entry import main

sys.exit(main())
