"""The AST determinism guard (tests/determinism_guard.py): every app/ file passes it, and it refuses each evasion.

What it refuses and why is listed in tests/determinism_guard.py's docstring.
"""

import pathlib

import pytest

from tests.determinism_guard import NUMPY_ALLOWED, violations

APP = pathlib.Path(__file__).resolve().parent.parent / "app"


def app_files() -> list[pathlib.Path]:
    files = sorted(APP.rglob("*.py"))
    assert len(files) > 10, "the guard must actually see app/"
    return files


@pytest.mark.parametrize("path", app_files(), ids=lambda p: str(p.relative_to(APP.parent)))
def test_app_file_is_deterministic(path):
    assert violations(path.read_text(), str(path.relative_to(APP.parent))) == []


NP = "import numpy as np\n"
FLOAT_DTYPE = "numpy float dtype"
FLOAT_STATS = "returns floats"
TRANSCENDENTAL = "libm"
ALLOW_LIST = "allow-list"
DYNAMIC = "dynamic"
DIVISION = "true division"
NEG_EXP = "negative exponent"
VIEWS = "dict views"


@pytest.mark.parametrize(
    ("snippet", "reason"),
    [
        # floats and true division
        pytest.param("x = 1.5", "float", id="float literal"),
        pytest.param("x = 2j", "complex", id="complex literal"),
        pytest.param("x = float(3)", "float", id="float call"),
        pytest.param("xs = list(map(float, [1]))", "float", id="float passed as a value"),
        pytest.param("x = 3 / 2", DIVISION, id="true division"),
        pytest.param("x = 3\nx /= 2", DIVISION, id="augmented division"),
        pytest.param("import operator\nx = operator.truediv(3, 2)", DIVISION, id="operator.truediv"),
        pytest.param("import operator\nx = 3\nx = operator.itruediv(x, 2)", DIVISION, id="operator.itruediv"),
        pytest.param("import operator\nf = operator.__truediv__", DIVISION, id="operator.__truediv__"),
        pytest.param("from operator import truediv\nx = truediv(3, 2)", DIVISION, id="from operator import truediv"),
        pytest.param("from operator import truediv as td", DIVISION, id="from operator import truediv as alias"),
        pytest.param("import operator as op\nx = op.truediv(3, 2)", DIVISION, id="aliased operator module truediv"),
        pytest.param("x = (3).__truediv__(2)", DIVISION, id="dunder __truediv__"),
        pytest.param("x = (2).__rtruediv__(3)", DIVISION, id="dunder __rtruediv__"),
        pytest.param("x = [3]\nx[0].__itruediv__(2)", DIVISION, id="dunder __itruediv__"),
        pytest.param("x = getattr(3, '__truediv__')(2)", DIVISION, id="getattr with '__truediv__'"),
        pytest.param("import operator\nf = operator.methodcaller('__truediv__', 2)", DIVISION,
                     id="methodcaller('__truediv__')"),
        # negative powers
        pytest.param("x = 10 ** -6", NEG_EXP, id="10 ** -6"),
        pytest.param("k = 2\nx = 3 ** -k", NEG_EXP, id="x ** -k"),
        pytest.param("k = 2\nx = 3 ** (-k)", NEG_EXP, id="x ** (-k) parenthesized"),
        pytest.param("x = 3 ** (0 - 6)", NEG_EXP, id="exponent folding to a negative constant"),
        pytest.param("k = 2\nx = 3 ** ~k", NEG_EXP, id="x ** ~k"),
        pytest.param("k = 2\nx = 3 ** (0 - k)", NEG_EXP, id="x ** (0 - k)"),
        pytest.param("k = 2\nx = 3 ** (-1 * k)", NEG_EXP, id="x ** (-1 * k)"),
        pytest.param("x = 3\nx **= -1", NEG_EXP, id="augmented **= -1"),
        pytest.param("x = pow(3, -1)", NEG_EXP, id="pow(x, -1)"),
        pytest.param("x = pow(3, -1, 7)", NEG_EXP, id="pow(x, -1, m) modular inverse"),
        pytest.param("x = pow(3, exp=-1)", NEG_EXP, id="pow with exp=-1 keyword"),
        pytest.param("import operator\nx = operator.pow(3, -1)", NEG_EXP, id="operator.pow(x, -1)"),
        pytest.param("from operator import pow as p\nx = p(3, -2)", NEG_EXP, id="aliased operator.pow"),
        pytest.param("x = (3).__pow__(-1)", NEG_EXP, id="dunder __pow__"),
        pytest.param("x = (3).__rpow__(2)", NEG_EXP, id="dunder __rpow__"),
        # float / decimal modules
        pytest.param("import statistics", "statistics", id="import statistics"),
        pytest.param("from statistics import median", "statistics", id="from statistics import"),
        pytest.param("import math", "float", id="import math"),
        pytest.param("from decimal import Decimal", "float", id="decimal"),
        pytest.param("from fractions import Fraction", "float", id="fractions"),
        # numpy: float dtypes and float functions
        pytest.param(NP + "x = np.mean(a)", FLOAT_STATS, id="np.mean"),
        pytest.param(NP + "x = np.average(a)", FLOAT_STATS, id="np.average"),
        pytest.param(NP + "x = np.median(a)", "even length", id="np.median"),
        pytest.param(NP + "x = np.std(a)", FLOAT_STATS, id="np.std"),
        pytest.param(NP + "x = np.var(a)", FLOAT_STATS, id="np.var"),
        pytest.param(NP + "x = np.percentile(a, 50)", FLOAT_STATS, id="np.percentile"),
        pytest.param(NP + "x = np.quantile(a, 1)", FLOAT_STATS, id="np.quantile"),
        pytest.param(NP + "x = np.nanmax(a)", FLOAT_STATS, id="np.nanmax"),
        pytest.param(NP + "x = np.true_divide(a, 2)", DIVISION, id="np.true_divide"),
        pytest.param(NP + "x = np.divide(a, 2)", DIVISION, id="np.divide"),
        pytest.param(NP + "x = np.sqrt(a)", TRANSCENDENTAL, id="np.sqrt"),
        pytest.param(NP + "x = np.exp(a)", TRANSCENDENTAL, id="np.exp"),
        pytest.param(NP + "x = np.log(a)", TRANSCENDENTAL, id="np.log"),
        pytest.param(NP + "x = np.log10(a)", TRANSCENDENTAL, id="np.log10"),
        pytest.param(NP + "x = np.log1p(a)", TRANSCENDENTAL, id="np.log1p"),
        pytest.param(NP + "x = np.float64(1)", FLOAT_DTYPE, id="np.float64"),
        pytest.param(NP + "x = np.float32(1)", FLOAT_DTYPE, id="np.float32"),
        pytest.param(NP + "x = np.longdouble(1)", FLOAT_DTYPE, id="np.longdouble"),
        pytest.param(NP + "x = np.linspace(0, 1, 5)", "float ranges", id="np.linspace"),
        pytest.param(NP + "x = np.empty(3, dtype=np.int64)", "uninitialized", id="np.empty"),
        pytest.param(NP + "x = np.zeros(3, dtype=np.int_)", "platform-dependent", id="np.int_ platform width"),
        pytest.param(NP + "x = np.zeros(3, dtype=np.intp)", "platform-dependent", id="np.intp platform width"),
        pytest.param(NP + "x = np.dot(a, a)", ALLOW_LIST, id="numpy function off the allow-list"),
        pytest.param(NP + "x = np.linalg.norm(a)", ALLOW_LIST, id="numpy submodule attribute"),
        pytest.param("import numpy.linalg", ALLOW_LIST, id="import numpy submodule"),
        pytest.param(NP + "y = a.astype(float)", "float", id=".astype(float)"),
        pytest.param(NP + "y = a.astype(np.float64)", FLOAT_DTYPE, id=".astype(np.float64)"),
        pytest.param(NP + "y = a.astype('float64')", FLOAT_DTYPE, id=".astype('float64')"),
        pytest.param(NP + "y = a.astype('f8')", FLOAT_DTYPE, id=".astype('f8')"),
        pytest.param(NP + "y = a.astype(int)", "platform-dependent", id=".astype(int)"),
        pytest.param(NP + "y = a.view('<f8')", FLOAT_DTYPE, id=".view('<f8') reinterpreting as float"),
        pytest.param(NP + "x = np.zeros(3, dtype=float)", "float", id="dtype=float"),
        pytest.param(NP + "x = np.zeros(3, dtype='float64')", FLOAT_DTYPE, id="dtype='float64'"),
        pytest.param(NP + "x = np.array([1], 'd')", FLOAT_DTYPE, id="positional dtype string 'd'"),
        pytest.param(NP + "x = np.zeros(3, dtype=object)", ALLOW_LIST, id="dtype=object"),
        pytest.param(NP + "x = np.array([1], dtype=np.dtype('float32'))", FLOAT_DTYPE, id="np.dtype('float32')"),
        pytest.param(NP + "x = np.zeros(3, dtype=kinds[0])", "run time", id="dtype computed at run time"),
        pytest.param(NP + "y = a.mean()", FLOAT_STATS, id="array method .mean()"),
        pytest.param(NP + "y = a.std()", FLOAT_STATS, id="array method .std()"),
        pytest.param(NP + "y = np.ndarray.mean(a)", FLOAT_STATS, id="unbound np.ndarray.mean"),
        pytest.param(NP + "y = np.ndarray.astype(a, 'f8')", FLOAT_DTYPE, id="unbound np.ndarray.astype"),
        pytest.param(NP + "y = a.sum(dtype='float64')", FLOAT_DTYPE, id="reduction with a float dtype"),
        pytest.param(NP + "dt = kinds\nx = np.zeros(3, dtype=dt)", "cannot be checked", id="dtype through a name"),
        pytest.param(NP + "o = np.argsort(a)", "stable", id="np.argsort without kind"),
        pytest.param(NP + "o = np.argsort(a, kind='quicksort')", "stable", id="np.argsort kind=quicksort"),
        pytest.param(NP + "o = a.argsort(axis=0)", "stable", id="array method argsort without kind"),
        pytest.param(NP + "u = np.unique(a, sorted=False)", "hash-table order", id="np.unique(sorted=False)"),
        # aliases must not evade
        pytest.param("import numpy as xp\nx = xp.mean(a)", FLOAT_STATS, id="import numpy as xp"),
        pytest.param("import numpy\nx = numpy.mean(a)", FLOAT_STATS, id="plain import numpy"),
        pytest.param("from numpy import mean as m\nx = m(a)", FLOAT_STATS, id="from numpy import mean as m"),
        pytest.param("from numpy import float64", FLOAT_DTYPE, id="from numpy import float64"),
        pytest.param("from numpy import *", "aliases", id="star import"),
        pytest.param(NP + "xp = np\nx = xp.mean(a)", DYNAMIC, id="numpy re-bound to another name"),
        pytest.param("import operator\nop = operator", DYNAMIC, id="operator re-bound to another name"),
        # numpy randomness
        pytest.param(NP + "r = np.random.default_rng(0)", "randomness", id="np.random attribute"),
        pytest.param("from numpy import random", "randomness", id="from numpy import random"),
        pytest.param("import numpy.random", "randomness", id="import numpy.random"),
        pytest.param("from numpy.random import default_rng", "randomness", id="from numpy.random import"),
        pytest.param("import numpy.random as npr", "randomness", id="import numpy.random as alias"),
        # dynamic imports and lookups
        pytest.param("np = __import__('numpy')", DYNAMIC, id="__import__"),
        pytest.param("import importlib", DYNAMIC, id="import importlib"),
        pytest.param("from importlib import import_module", DYNAMIC, id="from importlib import"),
        pytest.param("import app\nm = app.importlib", DYNAMIC, id="importlib as an attribute"),
        pytest.param("import sys\nnp = sys.modules['numpy']", DYNAMIC, id="sys.modules"),
        pytest.param("from sys import modules", DYNAMIC, id="from sys import modules"),
        pytest.param("x = eval('1 / 2')", DYNAMIC, id="eval"),
        pytest.param("exec('x = 1 / 2')", DYNAMIC, id="exec"),
        pytest.param("c = compile('1 / 2', '', 'eval')", DYNAMIC, id="compile"),
        pytest.param("h = globals()['__builtins__']", DYNAMIC, id="globals()"),
        pytest.param("h = __builtins__.hash", DYNAMIC, id="__builtins__"),
        pytest.param("import builtins\nh = builtins.hash", DYNAMIC, id="import builtins"),
        pytest.param(NP + "f = np.__dict__['mean']", DYNAMIC, id="module __dict__"),
        pytest.param(NP + "f = np.__getattribute__('mean')", DYNAMIC, id="__getattribute__"),
        pytest.param(NP + "name = 'me' + 'an'\nf = getattr(np, name)", DYNAMIC, id="getattr(module, computed)"),
        pytest.param(NP + "f = getattr(np, 'mean')", FLOAT_STATS, id="getattr(module, 'mean')"),
        pytest.param("import operator\nf = getattr(operator, 'truediv')", DIVISION, id="getattr(operator, 'truediv')"),
        pytest.param("f = getattr(a, 'mean')", FLOAT_STATS, id="getattr(array, 'mean')"),
        pytest.param("import operator\nf = operator.attrgetter(name)", DYNAMIC, id="attrgetter with a computed name"),
        # set operations on dict views
        pytest.param("a, b = {}, {}\nfor k in a.keys() | b.keys(): pass", VIEWS, id="keys() | keys()"),
        pytest.param("a, b = {}, {}\nc = a.keys() & b.keys()", VIEWS, id="keys() & keys()"),
        pytest.param("a, b = {}, {}\nc = a.keys() - b.keys()", VIEWS, id="keys() - keys()"),
        pytest.param("a, b = {}, {}\nc = a.keys() ^ b.keys()", VIEWS, id="keys() ^ keys()"),
        pytest.param("a, b = {}, {}\nc = a.items() | b.items()", VIEWS, id="items() | items()"),
        pytest.param("a = {}\nc = a.keys() - [1]", VIEWS, id="keys() - list"),
        pytest.param("a = {}\nc = [1] | a.keys()", VIEWS, id="list | keys() (reflected)"),
        pytest.param("a, b = {}, {}\nka = a.keys()\nc = ka | b", VIEWS, id="view through a name"),
        pytest.param("a, b = {}, {}\nka = a.keys()\nka |= b.keys()", VIEWS, id="augmented |= on a view"),
        # id / hash as values, sort keys
        pytest.param("xs = sorted([b'a'], key=id)", "id()", id="sorted key=id"),
        pytest.param("xs = sorted([b'a'], key=hash)", "hash()", id="sorted key=hash"),
        pytest.param("xs = [b'a']\nxs.sort(key=id)", "id()", id="list.sort key=id"),
        pytest.param("f = id", "id()", id="id as a value"),
        pytest.param("x = id(object())", "id()", id="id call"),
        pytest.param("x = hash(b'a')", "hash()", id="hash call"),
        pytest.param("x = b'a'.__hash__()", "hash()", id="dunder __hash__"),
        pytest.param("x = round(7)", "round()", id="round call"),
        # what the guard refused before
        pytest.param("for k in {1, 2}: pass", "PYTHONHASHSEED", id="set display"),
        pytest.param("s = {k for k in [1]}", "PYTHONHASHSEED", id="set comprehension"),
        pytest.param("s = set([b'a'])", "PYTHONHASHSEED", id="set call"),
        pytest.param("s = frozenset([b'a'])", "PYTHONHASHSEED", id="frozenset call"),
        pytest.param("def f(x: set[int]) -> None: pass", "PYTHONHASHSEED", id="set in an annotation"),
        pytest.param("print(1)", "I/O", id="print"),
        pytest.param("f = open('x')", "I/O", id="open"),
        pytest.param("import time", "clock", id="clock import"),
        pytest.param("from datetime import datetime", "clock", id="datetime import"),
        pytest.param("import random", "randomness", id="random import"),
        pytest.param("import secrets", "randomness", id="secrets import"),
        pytest.param("import os", "I/O", id="os import"),
        pytest.param("from node.storage import leveldb", "never imports node", id="app importing node"),
        pytest.param("try:\n    pass\nexcept Exception:\n    pass", "AppError", id="broad except"),
        pytest.param("try:\n    pass\nexcept (ValueError, BaseException):\n    pass", "AppError",
                     id="broad except in a tuple"),
        pytest.param("try:\n    pass\nexcept:\n    pass", "AppError", id="bare except"),
    ],
)
def test_guard_refuses_with_reason(snippet, reason):
    found = violations(snippet)
    assert found, f"not refused: {snippet!r}"
    assert any(reason in v for v in found), found


def test_guard_allows_legitimate_integer_code():
    source = """
import dataclasses
import hashlib
import operator
from collections.abc import Callable

from app.lib.math import Rounding, div_round


@dataclasses.dataclass(frozen=True)
class Fill:
    round: int
    size_base_quantums: int


def compute(d: dict[int, int], e: dict[int, int], wrapper, name: str) -> list[int]:
    x = 7 // 2
    y = 10 ** 6 * 2 ** 63 - pow(3, 4) + pow(3, 4, 7) + (-x) ** 3 + 10 ** abs(x) + 10 ** (x - 1)
    keys = dict.fromkeys([1, 2])
    merged = d | e
    both = sorted(k for k in d if k in e)
    ordered = sorted(d.items(), key=operator.itemgetter(1))
    msg = getattr(wrapper, name)
    present = getattr(wrapper, "market_id")
    digest = hashlib.sha256(b"x").digest()
    q = div_round(x, 3, Rounding.UP)
    try:
        pass
    except (KeyError, ValueError):
        pass
    return [x, y, q, len(keys), len(merged), len(both), len(ordered), len(digest), msg is present]
"""
    assert violations(source) == []


def test_guard_allows_integer_numpy():
    source = """
import numpy as np
from numpy import int64, uint64

DecodedVote = tuple[np.ndarray, np.ndarray]
TOP = np.iinfo(np.int64).max


def medians(rows: list, power_list: list[int], ids_list: list[int]) -> list[int]:
    ids = np.array(sorted(ids_list), dtype=np.int64)
    found = np.array(ids_list, dtype=int64)
    prices = np.array(rows[0], dtype="uint64")
    flags = np.zeros(3, dtype=bool)
    counts = np.zeros(3, np.uint32)
    positions = np.searchsorted(ids, found, "left")
    bad = np.any(positions >= len(ids)) or np.any(ids[np.minimum(positions, len(ids) - 1)] != found)
    matrix = np.stack([np.zeros(len(ids), dtype=uint64) for _ in rows])
    power = np.array(power_list, dtype=np.int64)
    reported = matrix > 0
    weight = reported * power[:, None]
    order = np.argsort(matrix, axis=0, kind="stable")
    other = matrix.argsort(axis=0, kind="mergesort")
    third = np.argsort(matrix, stable=True)
    sorted_prices = np.take_along_axis(matrix, order, axis=0)
    cumulative = np.cumsum(np.take_along_axis(weight, order, axis=0), axis=0)
    median_row = np.argmax(cumulative * 2 >= weight.sum(axis=0)[None, :], axis=0)
    halves = np.floor_divide(power, 2)
    uniq = np.unique(power)
    clipped = np.clip(np.where(power > 0, power, 0), 0, TOP)
    lex = np.lexsort((power, halves))
    ints = power.astype(np.int32).view(np.uint32)
    return [int(sorted_prices[median_row[0], 0]), bool(bad), len(other), len(third), len(uniq),
            len(clipped), len(lex), len(ints), int(flags.sum()), int(counts.sum()), int(prices.sum())]
"""
    assert violations(source) == []


def test_allow_list_names_exist_in_numpy():
    """A typo on the allow-list would silently allow nothing; every allowed name must be a numpy attribute."""
    np = pytest.importorskip("numpy")
    assert [name for name in sorted(NUMPY_ALLOWED) if not hasattr(np, name)] == []


def test_every_refusal_says_why():
    """Each message is 'file:line: what: reason' -- never a bare construct name."""
    for snippet in ["x = 1 / 2", "import numpy as np\nx = np.dot(a, a)", "s = set()", "x = 2 ** -1"]:
        for v in violations(snippet, "f.py"):
            assert v.startswith("f.py:") and len(v.split(": ", 1)[1]) > 40, v
