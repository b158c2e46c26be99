"""``wan-otel run --gpus N``: start the multi-GPU run under torchrun for the user.

Runs ``python -m torch.distributed.run --standalone --nproc-per-node N -m wan_otel run ...``
with the same flags (less ``--gpus``; a run id minted here when none was given, so that this
process can name the run; ``--ulysses N`` when no degree was given). SIGTERM and SIGINT go to
torchrun, which passes them to every rank; the exit status is torchrun's, or 128 + signal when
this process was asked to stop.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Sequence
from types import FrameType

LAUNCH_FLAGS = ("--gpus",)


def child_argv(argv: Sequence[str], gpus: int, run_id: str, degrees_given: bool) -> list[str]:
    """The ranks' ``wan-otel run`` flags: ours, without ``--gpus``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in LAUNCH_FLAGS:
            skip = True
            continue
        if any(arg.startswith(f"{flag}=") for flag in LAUNCH_FLAGS):
            continue
        out.append(arg)
    if "--run-id" not in out and not any(a.startswith("--run-id=") for a in out):
        out += ["--run-id", run_id]
    if not degrees_given:
        out += ["--ulysses", str(gpus)]
    return out


def launch(argv: Sequence[str], gpus: int, run_id: str, degrees_given: bool) -> int:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc-per-node", str(gpus), "--max-restarts", "0",
        "-m", "wan_otel", "run", *child_argv(argv, gpus, run_id, degrees_given),
    ]  # fmt: skip
    child = subprocess.Popen(command)
    received: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        return 128 + received[0]
    return code
