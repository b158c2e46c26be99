"""``wan-otel serve`` in a child process with every transformer forward slowed down by
``$WAN_OTEL_TEST_FORWARD_S`` seconds, so that a test can signal it in the middle of a run.
``$WAN_OTEL_TEST_STUCK_S`` makes every forward after the first generation's take that long
instead (a step that outlasts the shutdown's wait), and ``$WAN_OTEL_TEST_ABORT_WAIT_S``
shortens that wait.

    python -m tests.serve.slow_serve --preset tiny --port 0 ...
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from diffusers import WanTransformer3DModel

from wan_otel.cli import main
from wan_otel.pipeline.serve import server

DELAY_S = float(os.environ.get("WAN_OTEL_TEST_FORWARD_S", "0"))
STUCK_S = float(os.environ.get("WAN_OTEL_TEST_STUCK_S", "0"))
_forward = WanTransformer3DModel.forward
_calls = [0]


def _slow_forward(self: Any, *args: Any, **kwargs: Any) -> Any:
    _calls[0] += 1
    # The start-up warm-up makes 2 steps x 2 forwards (guidance): jobs come after.
    time.sleep(STUCK_S if STUCK_S and _calls[0] > 4 else DELAY_S)
    return _forward(self, *args, **kwargs)


if __name__ == "__main__":
    WanTransformer3DModel.forward = _slow_forward  # type: ignore[method-assign]
    if "WAN_OTEL_TEST_ABORT_WAIT_S" in os.environ:
        server.ABORT_WAIT_S = float(os.environ["WAN_OTEL_TEST_ABORT_WAIT_S"])
    sys.exit(main(["serve", *sys.argv[1:]]))
