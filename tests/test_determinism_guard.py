"""AST guard over app/: the constructs that make replicas diverge are not allowed there.

Forbidden: float literals and float(); true division (/ and /=); round(),
hash(), id(); importing clocks, randomness or I/O; set displays, set
comprehensions and set()/frozenset() (iteration order depends on
PYTHONHASHSEED: use dicts, which keep insertion order, or sorted lists); bare
or broad excepts (only AppError may be caught in app/).
"""

import ast
import pathlib

import pytest

APP = pathlib.Path(__file__).resolve().parent.parent / "app"
FORBIDDEN_CALLS = {"float", "round", "hash", "id", "set", "frozenset", "input", "open", "print"}
FORBIDDEN_MODULES = {"time", "datetime", "random", "secrets", "uuid", "os", "socket", "threading", "asyncio",
                     "subprocess", "plyvel", "httpx", "node", "numpy.random", "decimal", "fractions", "math"}
BROAD = {"Exception", "BaseException"}


def violations(source: str, filename: str = "<src>") -> list[str]:
    out = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Constant) and isinstance(node.value, float):
            out.append(f"{where}: float literal")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            out.append(f"{where}: true division '/' (use app.lib.math.div_round)")
        elif isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Div):
            out.append(f"{where}: '/=' true division")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            out.append(f"{where}: call to {node.func.id}()")
        elif isinstance(node, (ast.Set, ast.SetComp)):
            out.append(f"{where}: set display/comprehension (iteration order varies with PYTHONHASHSEED)")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in FORBIDDEN_MODULES or alias.name.split(".")[0] in FORBIDDEN_MODULES:
                    out.append(f"{where}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module in FORBIDDEN_MODULES or node.module.split(".")[0] in FORBIDDEN_MODULES:
                out.append(f"{where}: from {node.module} import ...")
        elif isinstance(node, ast.ExceptHandler):
            t = node.type
            names = [t] if not isinstance(t, ast.Tuple) else list(t.elts) if t is not None else []
            if t is None:
                out.append(f"{where}: bare except")
            elif any(isinstance(n, ast.Name) and n.id in BROAD for n in names):
                out.append(f"{where}: broad except")
    return out


def app_files() -> list[pathlib.Path]:
    files = sorted(APP.rglob("*.py"))
    assert len(files) > 10, "the guard must actually see app/"
    return files


@pytest.mark.parametrize("path", app_files(), ids=lambda p: str(p.relative_to(APP.parent)))
def test_app_file_is_deterministic(path):
    assert violations(path.read_text(), str(path.relative_to(APP.parent))) == []


@pytest.mark.parametrize(
    "snippet",
    [
        pytest.param("x = 1.5", id="float literal"),
        pytest.param("x = float(3)", id="float call"),
        pytest.param("x = 3 / 2", id="true division"),
        pytest.param("x = 3\nx /= 2", id="augmented division"),
        pytest.param("import time", id="clock import"),
        pytest.param("from datetime import datetime", id="datetime import"),
        pytest.param("import random", id="randomness"),
        pytest.param("for k in {1, 2}: pass", id="set display"),
        pytest.param("s = set([b'a'])", id="set call"),
        pytest.param("x = hash(b'a')", id="hash"),
        pytest.param("try:\n    pass\nexcept Exception:\n    pass", id="broad except"),
        pytest.param("try:\n    pass\nexcept:\n    pass", id="bare except"),
        pytest.param("from node.storage import leveldb", id="app importing node"),
    ],
)
def test_guard_catches(snippet):
    assert violations(snippet) != []


def test_guard_allows_floor_division_and_dicts():
    assert violations("x = 7 // 2\nd = dict.fromkeys([1, 2])\nfor k in sorted(d): pass") == []
