"""``python -m wan_otel``: the ``wan-otel`` command (what ``torchrun -m wan_otel`` runs)."""

import sys

from wan_otel.cli import main

sys.exit(main())
