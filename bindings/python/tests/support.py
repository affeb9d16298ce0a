"""Helpers shared by the tests. They test the installed package (`pip install
./bindings/python`; scripts/test-all does it in a virtual environment), so a child
interpreter gets this one's environment unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

PKG_ROOT = Path(__file__).resolve().parents[1]  # bindings/python
REPO_ROOT = PKG_ROOT.parents[1]
#: The Python half of the package, in the source tree.
SOURCE = PKG_ROOT / "python" / "revledger"


def child_env(**extra: str) -> Dict[str, str]:
    """The environment for a child Python that imports this package: this one's, with
    neither PYTHONPATH nor REVLEDGER_LIB (the installed package needs neither)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "REVLEDGER_LIB")}
    env.update(extra)
    return env


def run_python(code: str, *args: str, env: Optional[Dict[str, str]] = None,
               cwd: Optional[Path] = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter (not a fork of this one) and waits for it.
    The working directory (first on the child's sys.path) is `cwd`, or the repository
    root, where no `revledger` package sits."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=child_env() if env is None else env,
        cwd=REPO_ROOT if cwd is None else cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


