"""Shared fixtures: a store holding the reference L40S run."""

from __future__ import annotations

from pathlib import Path

import pytest

from wan_otel.examples.reference_l40s import RUN_ID, write_reference_run


@pytest.fixture
def reference_store(tmp_path: Path) -> Path:
    write_reference_run(tmp_path)
    return tmp_path


@pytest.fixture
def reference_run_id() -> str:
    return RUN_ID
