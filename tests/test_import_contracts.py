"""import-linter contracts (pyproject.toml): app never imports node, nor I/O libraries."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_import_linter_contracts_hold():
    exe = pathlib.Path(sys.executable).parent / "lint-imports"
    res = subprocess.run([str(exe)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Contracts: 2 kept, 0 broken" in res.stdout
