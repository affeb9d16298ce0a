"""Fixtures shared by the tests."""

from __future__ import annotations

from pathlib import Path

import pytest

import revledger


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "revocations.ledger"


@pytest.fixture
def writer(path: Path):
    with revledger.Ledger.open_writer(path, max_token_lifetime=3600) as w:
        yield w


@pytest.fixture
def reader(writer, path: Path):
    with revledger.Ledger.open_reader(path) as r:
        yield r
