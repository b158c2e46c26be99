"""``wan-otel serve`` in a child process with every transformer forward slowed down by
``$WAN_OTEL_TEST_FORWARD_S`` seconds, so that a test can signal it in the middle of a run.

    python -m tests.serve.slow_serve --preset tiny --port 0 ...
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from diffusers import WanTransformer3DModel

from wan_otel.cli import main

DELAY_S = float(os.environ.get("WAN_OTEL_TEST_FORWARD_S", "0"))
_forward = WanTransformer3DModel.forward


def _slow_forward(self: Any, *args: Any, **kwargs: Any) -> Any:
    time.sleep(DELAY_S)
    return _forward(self, *args, **kwargs)


if __name__ == "__main__":
    WanTransformer3DModel.forward = _slow_forward  # type: ignore[method-assign]
    sys.exit(main(["serve", *sys.argv[1:]]))
