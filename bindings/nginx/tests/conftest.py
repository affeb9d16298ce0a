"""Fixtures of the nginx tests: a scratch directory and nginx instances stopped at the
end of each test, whatever happens."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402


@pytest.fixture
def base():
    d = harness.scratch_dir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def nginx(base):
    """nginx(http_block, **options) -> a started harness.Nginx, stopped after the test."""
    started = []

    def start(http: str, **kw) -> harness.Nginx:
        n = harness.Nginx(base, http, **kw)
        started.append(n)
        return n.start()

    yield start
    for n in started:
        n.stop()
