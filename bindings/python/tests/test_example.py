"""The example of the README runs and says what the README says; the benchmark script
runs; the package is what pyproject.toml says, in Python 3.9 syntax."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import revledger

from support import PKG_ROOT, REPO_ROOT, SOURCE, child_env

EXPECTED = """\
john: 401 WWW-Authenticate: Bearer error="invalid_token", error_description="token revoked: role permissions changed at 1700000000"
mike: 401 WWW-Authenticate: Bearer error="invalid_token", error_description="token revoked: role permissions changed at 1700000000"
bruce: 200 (token is valid)
john after refresh: revoked=False
bruce's session sid-42 logged out: session revoked=True
"""


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], env=child_env(), capture_output=True, text=True, timeout=300,
        cwd=REPO_ROOT,
    )


def test_example_prints_the_verdicts_of_the_design_scenario():
    done = run_script(str(PKG_ROOT / "example.py"))
    assert done.returncode == 0, done.stderr
    assert done.stdout == EXPECTED


def test_example_writes_a_ledger_where_it_is_told(tmp_path: Path):
    path = tmp_path / "acme.ledger"
    done = run_script(str(PKG_ROOT / "example.py"), str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout == EXPECTED
    with revledger.Ledger.open_reader(path) as r:
        assert r.check("acme", "mike", ["super_admin"], issued_at=1_699_999_999).revoked
        assert r.stats(now=0).rule_records == 2


def test_the_readme_shows_the_example_and_its_output_as_they_are():
    readme = (PKG_ROOT / "README.md").read_text()
    assert "```python\n" + (PKG_ROOT / "example.py").read_text() + "```" in readme
    assert EXPECTED in readme


def test_bench_runs_and_prints_ns_per_check():
    done = run_script(str(PKG_ROOT / "bench.py"), "--rules", "200", "--checks", "200")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("ledger: 200 live rules")
    assert [l.split(":")[0] for l in lines[1:]] == [
        "Ledger.check, valid",
        "Ledger.check, fresh",
        "revledger_check via ctypes (prepared), valid",
    ]
    for line in lines[1:]:
        wall, cpu = re.findall(r"(\d+) ns/check (?:wall|CPU)", line)
        assert int(wall) > 0 and int(cpu) > 0


def python_files():
    files = sorted(PKG_ROOT.rglob("*.py"))
    assert SOURCE / "__init__.py" in files
    return files


def test_every_file_is_python_3_9_syntax():
    for path in python_files():
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 9))


def test_the_package_is_typed_and_declared_as_pyproject_says():
    assert (SOURCE / "py.typed").is_file()
    assert (SOURCE / "_revledger.pyi").is_file()
    try:
        import tomllib
    except ImportError:  # Python < 3.11: check the few lines by hand
        text = (PKG_ROOT / "pyproject.toml").read_text()
        assert 'build-backend = "maturin"' in text
        assert 'dynamic = ["version"]' in text
        assert "dependencies = []" in text
        return
    meta = tomllib.loads((PKG_ROOT / "pyproject.toml").read_text())
    assert meta["build-system"]["build-backend"] == "maturin"
    project = meta["project"]
    assert project["name"] == "revledger"
    assert project["dependencies"] == []
    assert project["requires-python"] == ">=3.9"
    # One version: the workspace's (Cargo.toml), which the compiled library reports.
    assert project["dynamic"] == ["version"]
    assert meta["tool"]["maturin"]["module-name"] == "revledger._revledger"
    crate = tomllib.loads((PKG_ROOT / "Cargo.toml").read_text())
    assert crate["package"]["version"] == {"workspace": True}
    cargo = tomllib.loads((REPO_ROOT / "Cargo.toml").read_text())
    assert cargo["workspace"]["package"]["version"] == revledger.__version__
