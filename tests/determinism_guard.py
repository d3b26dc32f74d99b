"""AST guard over app/: the constructs that make replicas diverge are refused there, each with the reason.

``violations(source, filename)`` returns one ``"file:line: what: why"`` string per refusal. It refuses:

- Floats: float literals, complex literals, and the names ``float``/``complex`` as any value (``float(x)``,
  ``map(float, xs)``, ``dtype=float``). Binary floating point rounds; accumulated error, FMA contraction and
  libm differences make replicas disagree on a last bit, and a last bit changes the app hash. Use scaled ints.
- True division in every spelling: ``/``, ``/=``, ``operator.truediv``/``itruediv`` (by attribute or
  ``from operator import``), and the dunders ``__truediv__``/``__rtruediv__``/``__itruediv__``. All return
  floats; ``app.lib.math.div_round`` divides with an explicit rounding direction.
- Negative powers: ``x ** -k``, ``10 ** -6``, ``x **= -1``, ``x ** ~k``, ``x ** (0 - k)``, ``x ** (-1 * k)``,
  any exponent that folds to a negative constant, and ``pow(x, -1)`` / ``pow(x, -1, m)`` /
  ``operator.pow(x, -1)``. Without a modulus the result is a float; with one it is a modular inverse that
  raises when none exists -- spell that explicitly. (For 10^|e| write ``10 ** abs(e)``.)
  The dunders ``__pow__``/``__rpow__``/``__ipow__`` are refused too (they would bypass this check).
- ``round``, ``hash``, ``id``, ``set``, ``frozenset`` as any value, not only as calls (``sorted(xs, key=id)``,
  ``key=hash``, a ``set[int]`` annotation): hash() of str/bytes is salted per process (PYTHONHASHSEED), id()
  is a memory address, and a set's iteration order follows both; round() rounds half to even and is
  float-oriented (use div_round).
  Also set displays and set comprehensions, and ``__hash__``/``__round__``/``__float__`` by attribute.
- Set operations on dict views: ``a.keys() | b.keys()``, ``&``, ``-``, ``^`` (also on ``.items()``, also
  through a name assigned from ``.keys()``/``.items()`` in the same file, also augmented): the result is a
  set, so its iteration order depends on PYTHONHASHSEED. Dict merges (``d1 | d2``) stay allowed.
- Imports of clocks (time, datetime), randomness (random, secrets, uuid), I/O and concurrency (os, socket,
  threading, asyncio, subprocess, plyvel, httpx), float or context-dependent math (math, cmath, decimal,
  fractions, statistics), dynamic import machinery (importlib, builtins), and ``node`` (app never imports
  node). ``sys.modules``/``from sys import modules`` and ``sys.getsizeof``/``getrefcount`` (process state).
  Star imports (they hide which names a file binds, so aliases could not be tracked).
- Dynamic code and lookups that would let any of the above through: ``__import__``, ``eval``, ``exec``,
  ``compile``, ``globals``, ``locals``, ``vars``, ``breakpoint``, ``__builtins__``, ``__dict__``,
  ``__globals__``, ``__getattribute__``; string constants spelling a refused dunder; ``getattr`` on an
  imported name (module) with any name; ``getattr(obj, "const")`` checked as if ``obj.const`` were written;
  ``operator.attrgetter``/``methodcaller`` with a refused or non-constant name; a watched module (numpy,
  operator, sys) used as a plain value (``xp = np`` would re-bind it out of sight).
  Allowed on purpose: ``getattr(obj, name)`` with a non-constant name on a non-module object -- app/tx/codec.py
  dispatches protobuf oneofs this way, and that one shape cannot be checked statically.
- numpy, by ALLOW-LIST: ``numpy.X`` (however numpy is aliased: ``import numpy as xp``, ``from numpy import
  X as y``) must be in NUMPY_ALLOWED: the explicit-width integer dtypes and bool, and functions that are exact
  on integers. Everything else is refused with a reason -- float dtypes (rounding mode / platform), float
  statistics (mean, median: float for even length, percentile, ...), true_divide/divide, transcendental
  functions (libm / SIMD dependent), linspace, numpy.random and every other submodule, ``empty``
  (uninitialized memory), platform-width ints (int_, intp, intc: C long width varies) -- or, for the rest,
  "not on the allow-list". Also: ``dtype=`` (any call), ``.astype(...)``, ``.view(...)`` and positional dtype
  strings of numpy calls must be an allowed integer dtype; ``argsort`` (function or method) must say
  ``kind="stable"`` (or "mergesort" / ``stable=True``): the default quicksort's tie order depends on the
  CPU's SIMD dispatch (x86-simd-sort); ``np.unique(..., sorted=False)`` returns hash-table order; the array methods
  ``.mean()``/``.std()``/``.var()`` return floats.
- Bare ``except:`` and broad ``except Exception``/``BaseException``: only AppError may be caught in app/; any
  other error must halt the node (a validator that diverges must stop, not limp on).

Known limits (types are not inferred): ``x ** k`` with a variable k that is negative at run time; mixing
uint64 and int64 arrays (numpy promotes to float64); integer overflow in numpy (wraps silently).
"""

from __future__ import annotations

import ast

# --- reasons (the WHY of each refusal) -------------------------------------------------------------------------

FLOAT_WHY = "floats round, and libm/FMA/summation order can differ between builds; use scaled ints"
NUMPY_FLOAT_DTYPE_WHY = "numpy float dtype: results depend on rounding mode / platform; use int64 arrays"
TRUE_DIVISION_WHY = "true division returns a float; use app.lib.math.div_round (explicit rounding)"
NEGATIVE_EXPONENT_WHY = ("negative exponent: x ** -k is a float (pow with a modulus and a negative exponent is "
                         "a modular inverse that raises when none exists; spell it explicitly)")
DICT_VIEW_WHY = "set operation on dict views: the result is a set, its iteration order depends on PYTHONHASHSEED"
DYNAMIC_WHY = "dynamic import / lookup: names reached this way evade this guard"
NUMPY_ALLOW_LIST_WHY = ("not on the numpy allow-list NUMPY_ALLOWED in tests/determinism_guard.py (explicit-width "
                        "integer dtypes and integer-exact functions only; add a name there only with a reason)")

BUILTIN_WHY = {
    "float": "float: " + FLOAT_WHY,
    "complex": "complex: " + FLOAT_WHY,
    "round": "round(): rounds half to even and is float-oriented; use app.lib.math.div_round with a Rounding",
    "hash": "hash(): str/bytes hashes are salted per process (PYTHONHASHSEED), so values and orders differ",
    "id": "id(): an object's memory address differs between processes (so does any order keyed on it)",
    "set": "set: iteration order depends on PYTHONHASHSEED; use dicts (insertion order) or sorted lists",
    "frozenset": "frozenset: iteration order depends on PYTHONHASHSEED; use dicts or sorted tuples",
    "input": "input(): I/O; app/ is a pure state machine",
    "open": "open(): I/O; app/ is a pure state machine",
    "print": "print(): I/O; app/ is a pure state machine",
    "eval": "eval(): " + DYNAMIC_WHY,
    "exec": "exec(): " + DYNAMIC_WHY,
    "compile": "compile(): " + DYNAMIC_WHY,
    "__import__": "__import__(): " + DYNAMIC_WHY,
    "globals": "globals(): " + DYNAMIC_WHY,
    "locals": "locals(): " + DYNAMIC_WHY,
    "vars": "vars(): " + DYNAMIC_WHY,
    "breakpoint": "breakpoint(): I/O; app/ is a pure state machine",
    "__builtins__": "__builtins__: " + DYNAMIC_WHY,
}

DUNDER_WHY = {
    "__truediv__": TRUE_DIVISION_WHY,
    "__rtruediv__": TRUE_DIVISION_WHY,
    "__itruediv__": TRUE_DIVISION_WHY,
    "__pow__": "__pow__ bypasses the " + NEGATIVE_EXPONENT_WHY,
    "__rpow__": "__rpow__ bypasses the " + NEGATIVE_EXPONENT_WHY,
    "__ipow__": "__ipow__ bypasses the " + NEGATIVE_EXPONENT_WHY,
    "__float__": "__float__: " + FLOAT_WHY,
    "__complex__": "__complex__: " + FLOAT_WHY,
    "__round__": BUILTIN_WHY["round"],
    "__hash__": BUILTIN_WHY["hash"],
    "__import__": DYNAMIC_WHY,
    "__builtins__": DYNAMIC_WHY,
    "__dict__": DYNAMIC_WHY,
    "__globals__": DYNAMIC_WHY,
    "__getattribute__": DYNAMIC_WHY,
}

_CLOCK = "clock: replicas read different wall times; time comes from the block header"
_RANDOM = "randomness: replicas draw different values; derive any pseudo-randomness from block data"
_IO = "I/O or concurrency: app/ is a pure state machine"
_FLOAT_MATH = "float or context-dependent math: " + FLOAT_WHY
FORBIDDEN_MODULES = {
    "time": _CLOCK, "datetime": _CLOCK,
    "random": _RANDOM, "secrets": _RANDOM, "uuid": _RANDOM,
    "os": _IO, "socket": _IO, "threading": _IO, "asyncio": _IO, "subprocess": _IO, "plyvel": _IO, "httpx": _IO,
    "math": _FLOAT_MATH, "cmath": _FLOAT_MATH, "decimal": _FLOAT_MATH, "fractions": _FLOAT_MATH,
    "statistics": "statistics: works in floats/Fractions (mean, median of even length); " + FLOAT_WHY,
    "importlib": "importlib: " + DYNAMIC_WHY,
    "builtins": "builtins: reaches hash/id/float by attribute; " + DYNAMIC_WHY,
    "node": "app never imports node (node does I/O and reads clocks)",
}

OPERATOR_WHY = {
    "truediv": TRUE_DIVISION_WHY, "itruediv": TRUE_DIVISION_WHY,
    "__truediv__": TRUE_DIVISION_WHY, "__itruediv__": TRUE_DIVISION_WHY,
}
OPERATOR_POW = {"pow", "ipow", "__pow__", "__ipow__"}
SYS_WHY = {
    "modules": "sys.modules: " + DYNAMIC_WHY,
    "getsizeof": "sys.getsizeof: depends on the interpreter build",
    "getrefcount": "sys.getrefcount: depends on process state",
}
WATCHED_MODULES = {"numpy", "operator", "sys"}  # refused as plain values: re-binding would hide them

BROAD_EXCEPTIONS = {"Exception", "BaseException"}

# --- numpy allow-list ----------------------------------------------------------------------------------------

NUMPY_INT_DTYPES = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool", "bool_"}
NUMPY_ALLOWED_FUNCTIONS = {
    # types and introspection
    "ndarray", "dtype", "iinfo", "newaxis",
    # construction (explicit integer dtype or integer data; np.empty is not here: uninitialized memory)
    "array", "asarray", "zeros", "zeros_like", "ones", "ones_like", "full", "full_like", "arange",
    # shape and selection
    "concatenate", "stack", "vstack", "hstack", "reshape", "ravel", "repeat", "tile", "where", "take",
    "take_along_axis", "nonzero", "flatnonzero", "count_nonzero", "argmax", "argmin",
    # ordering (argsort must be stable; np.unique must stay sorted)
    "sort", "argsort", "lexsort", "searchsorted", "unique",
    # integer-exact arithmetic, comparison, reductions
    "add", "subtract", "multiply", "floor_divide", "remainder", "mod", "negative", "abs", "absolute", "sign",
    "minimum", "maximum", "clip", "cumsum", "sum", "diff", "max", "min", "any", "all", "array_equal",
    "equal", "not_equal", "less", "less_equal", "greater", "greater_equal",
    "logical_and", "logical_or", "logical_not", "bitwise_and", "bitwise_or", "bitwise_xor",
    "left_shift", "right_shift",
}
NUMPY_ALLOWED = NUMPY_INT_DTYPES | NUMPY_ALLOWED_FUNCTIONS
ALLOWED_DTYPE_STRINGS = NUMPY_INT_DTYPES
NUMPY_OPTION_STRINGS = {"stable", "mergesort", "left", "right", "C", "F", "K", "A", "raise", "wrap", "clip"}
STABLE_SORT_KINDS = {"stable", "mergesort"}

_NUMPY_FLOAT_TYPES = {"double", "single", "half", "longdouble", "csingle", "cdouble", "clongdouble", "floating",
                      "complexfloating", "inexact", "finfo", "float_power", "nan", "inf", "pi", "e"}
_NUMPY_FLOAT_STATS = {"mean", "average", "std", "var", "median", "percentile", "quantile", "corrcoef", "cov",
                      "histogram", "interp", "gradient", "trapezoid", "convolve"}
_NUMPY_TRUE_DIVISION = {"divide", "true_divide", "reciprocal"}
_NUMPY_TRANSCENDENTAL_PREFIXES = ("sqrt", "cbrt", "exp", "log", "sin", "cos", "tan", "arc", "hypot", "power",
                                  "round", "around", "rint", "floor", "ceil", "trunc", "fix", "deg", "rad")
_NUMPY_PLATFORM_INTS = {"int_", "intp", "uintp", "intc", "uintc", "uint", "long", "ulong", "longlong",
                        "ulonglong", "short", "ushort", "byte", "ubyte", "integer", "signedinteger"}


def numpy_refusal(name: str) -> str:
    """Why ``numpy.<name>`` is refused ('' when it is on the allow-list)."""
    if name in NUMPY_ALLOWED:
        return ""
    if name == "random":
        return "numpy.random: " + _RANDOM
    if name.startswith(("float", "complex", "longdouble", "clongdouble")) or name in _NUMPY_FLOAT_TYPES:
        return f"numpy.{name}: " + NUMPY_FLOAT_DTYPE_WHY
    if name in _NUMPY_FLOAT_STATS or name.startswith("nan"):
        even = " (the mean of the two middle values for even length)" if name.endswith("median") else ""
        return (f"numpy.{name} returns floats{even}; compute integer statistics explicitly, as "
                "app.prices.logic.compute_weighted_median does")
    if name in _NUMPY_TRUE_DIVISION:
        return f"numpy.{name}: " + TRUE_DIVISION_WHY + " (np.floor_divide for arrays)"
    if name.startswith(_NUMPY_TRANSCENDENTAL_PREFIXES):
        return f"numpy.{name}: float function, the result depends on libm / SIMD implementation"
    if name in {"linspace", "logspace", "geomspace"}:
        return f"numpy.{name}: float ranges; use np.arange with int64 arguments"
    if name in {"empty", "empty_like"}:
        return f"numpy.{name}: uninitialized memory differs between runs; use np.zeros"
    if name in _NUMPY_PLATFORM_INTS:
        return f"numpy.{name}: platform-dependent integer width; use an explicit width such as np.int64"
    return f"numpy.{name}: " + NUMPY_ALLOW_LIST_WHY


# --- the walk ------------------------------------------------------------------------------------------------

_SET_OPS = (ast.BitOr, ast.BitAnd, ast.Sub, ast.BitXor)


def _module_refusal(module: str) -> str:
    parts = module.split(".")
    if parts[0] in FORBIDDEN_MODULES:
        return FORBIDDEN_MODULES[parts[0]]
    if parts[0] == "numpy" and len(parts) > 1:
        return "numpy submodule " + numpy_refusal(parts[1])
    return ""


def _collect_aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> what it is bound to by an import anywhere in the file ('numpy', 'numpy.int64', ...)."""
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    aliases[a.asname] = a.name
                else:
                    top = a.name.split(".")[0]
                    aliases[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                if a.name != "*":
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    return aliases


def _is_view_call(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in {"keys", "items"})


def _collect_view_names(tree: ast.AST) -> set[str]:
    """Names assigned straight from ``.keys()``/``.items()`` somewhere in the file (no type inference)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and _is_view_call(node.value):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and node.value is not None and _is_view_call(node.value):
            if isinstance(node.target, ast.Name):
                names.add(node.target.id)
    return names


def _const_int(node: ast.AST) -> int | None:
    """The value of an integer constant expression, else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp):
        v = _const_int(node.operand)
        if v is None:
            return None
        return {ast.USub: -v, ast.UAdd: v, ast.Invert: ~v}.get(type(node.op))
    if isinstance(node, ast.BinOp):
        a, b = _const_int(node.left), _const_int(node.right)
        if a is None or b is None:
            return None
        if isinstance(node.op, ast.Add):
            return a + b
        if isinstance(node.op, ast.Sub):
            return a - b
        if isinstance(node.op, ast.Mult):
            return a * b
    return None


def _is_negative_exponent(node: ast.AST) -> bool:
    """-k, ~k, a negative constant expression, and the thin disguises 0 - k and -1 * k."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Invert)):
        return True
    if isinstance(node, ast.BinOp):
        left = _const_int(node.left)
        if isinstance(node.op, ast.Sub) and left is not None and left <= 0:
            return True
        if isinstance(node.op, ast.Mult) and (_is_negative_exponent(node.left) or _is_negative_exponent(node.right)):
            return True
    v = _const_int(node)
    return v is not None and v < 0


class _Guard:
    def __init__(self, tree: ast.AST, filename: str) -> None:
        self.tree = tree
        self.filename = filename
        self.aliases = _collect_aliases(tree)
        self.view_names = _collect_view_names(tree)
        self.parents: dict[ast.AST, ast.AST] = {}
        for parent in ast.walk(tree):
            for child in ast.iter_child_nodes(parent):
                self.parents[child] = parent
        self.out: list[str] = []

    def refuse(self, node: ast.AST, what: str) -> None:
        self.out.append(f"{self.filename}:{getattr(node, 'lineno', '?')}: {what}")

    def qualify(self, node: ast.AST) -> str | None:
        """'numpy.mean' for ``xp.mean`` after ``import numpy as xp``; None when not rooted in an import."""
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self.qualify(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def run(self) -> list[str]:
        for node in ast.walk(self.tree):
            method = getattr(self, "visit_" + type(node).__name__, None)
            if method is not None:
                method(node)
        return self.out

    # literals and names

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, float):
            self.refuse(node, "float literal: " + FLOAT_WHY)
        elif isinstance(node.value, complex):
            self.refuse(node, "complex literal: " + FLOAT_WHY)
        elif isinstance(node.value, str) and node.value in DUNDER_WHY:
            self.refuse(node, f"string {node.value!r} (a dynamic spelling of a refused attribute): "
                              + DUNDER_WHY[node.value])

    def visit_Name(self, node: ast.Name) -> None:
        if not isinstance(node.ctx, ast.Load):
            return
        if node.id in BUILTIN_WHY and node.id not in self.aliases:
            self.refuse(node, BUILTIN_WHY[node.id])
        elif self.aliases.get(node.id) in WATCHED_MODULES:
            parent = self.parents.get(node)
            is_getattr_object = (isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name)
                                 and parent.func.id == "getattr" and parent.args[:1] == [node])  # check_getattr
            if not (isinstance(parent, ast.Attribute) and parent.value is node) and not is_getattr_object:
                self.refuse(node, f"module {self.aliases[node.id]} used as a value (re-binding or passing it "
                                  f"hides its attributes): {DYNAMIC_WHY}")

    def visit_Set(self, node: ast.Set) -> None:
        self.refuse(node, "set display: " + BUILTIN_WHY["set"])

    def visit_SetComp(self, node: ast.SetComp) -> None:
        self.refuse(node, "set comprehension: " + BUILTIN_WHY["set"])

    def visit_Attribute(self, node: ast.Attribute) -> None:
        why = self.attribute_refusal(self.qualify(node.value), node.attr)
        if why:
            self.refuse(node, why)

    def attribute_refusal(self, base: str | None, attr: str) -> str:
        """Why ``<base>.attr`` is refused ('' if it is not); base is the qualified import it is rooted in, if any.

        Shared by attribute syntax, ``from <base> import attr``, getattr constants and attrgetter strings.
        """
        if attr in DUNDER_WHY:
            return f"attribute {attr}: {DUNDER_WHY[attr]}"
        if attr in {"importlib", "import_module"}:
            return f"attribute {attr}: " + DYNAMIC_WHY
        if base == "numpy":
            return numpy_refusal(attr)
        if base == "operator" and attr in OPERATOR_WHY:
            return f"operator.{attr}: {OPERATOR_WHY[attr]}"
        if base == "sys" and attr in SYS_WHY:
            return SYS_WHY[attr]
        if attr in {"mean", "std", "var"} and (base is None or base.startswith("numpy.")):
            return f"array method .{attr}() returns floats; " + FLOAT_WHY
        return ""

    # operators

    def visit_BinOp(self, node: ast.BinOp) -> None:
        self.check_operator(node, node.op, node.left, node.right, "")

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.check_operator(node, node.op, node.target, node.value, "=")

    def check_operator(self, node: ast.AST, op: ast.operator, left: ast.AST, right: ast.AST, aug: str) -> None:
        if isinstance(op, ast.Div):
            self.refuse(node, f"'/{aug}' " + TRUE_DIVISION_WHY)
        elif isinstance(op, ast.Pow) and _is_negative_exponent(right):
            self.refuse(node, f"'**{aug}' with a " + NEGATIVE_EXPONENT_WHY)
        elif isinstance(op, _SET_OPS) and any(
                _is_view_call(side) or (isinstance(side, ast.Name) and side.id in self.view_names)
                for side in (left, right)):
            self.refuse(node, DICT_VIEW_WHY)

    # calls

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        qual = self.qualify(func)
        if (isinstance(func, ast.Name) and func.id == "pow" and "pow" not in self.aliases) or (
                qual is not None and qual.startswith("operator.") and qual.split(".")[1] in OPERATOR_POW):
            exponent = node.args[1] if len(node.args) > 1 else _keyword(node, "exp")
            if exponent is not None and _is_negative_exponent(exponent):
                self.refuse(node, "pow() with a " + NEGATIVE_EXPONENT_WHY)
        if isinstance(func, ast.Name) and func.id == "getattr" and "getattr" not in self.aliases:
            self.check_getattr(node)
        if qual in {"operator.attrgetter", "operator.methodcaller"}:
            self.check_attr_strings(node, node.args if qual == "operator.attrgetter" else node.args[:1])
        dtype = _keyword(node, "dtype")
        if dtype is not None:
            self.check_dtype(dtype)
        if isinstance(func, ast.Attribute) and func.attr in {"astype", "view"}:
            # a.astype(dt) / a.view(dt), or unbound np.ndarray.astype(a, dt)
            unbound = qual is not None and qual.startswith("numpy.")
            if qual is None or unbound:
                for target in node.args[int(unbound):int(unbound) + 1]:
                    self.check_dtype(target)
        if qual is not None and qual.startswith("numpy.") and qual.split(".", 1)[1] in NUMPY_ALLOWED:
            self.check_numpy_call(node, qual.split(".", 1)[1])  # refused names were reported by visit_Attribute
        elif isinstance(func, ast.Attribute) and qual is None and func.attr == "argsort":
            self.check_stable(node, kind_position=1)

    def check_getattr(self, node: ast.Call) -> None:
        if len(node.args) < 2:
            return
        obj, name = node.args[0], node.args[1]
        if isinstance(name, ast.Constant) and isinstance(name.value, str):
            why = self.attribute_refusal(self.qualify(obj), name.value)
            if why:
                self.refuse(node, f"getattr(..., {name.value!r}): {why}")
        elif self.qualify(obj) is not None:
            # A non-constant name on a non-module object stays allowed: app/tx/codec.py reads protobuf oneofs so.
            self.refuse(node, f"getattr on imported name {self.qualify(obj)} with a computed name: " + DYNAMIC_WHY)

    def check_attr_strings(self, node: ast.Call, args: list[ast.AST]) -> None:
        for arg in args:
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                self.refuse(node, "attrgetter/methodcaller with a computed name: " + DYNAMIC_WHY)
                continue
            for part in arg.value.split("."):
                why = self.attribute_refusal(None, part)
                if why:
                    self.refuse(node, f"attrgetter/methodcaller({arg.value!r}): {why}")

    def check_dtype(self, node: ast.AST) -> None:
        """An explicit-width integer or bool dtype; numpy attributes and float names are judged elsewhere."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value not in ALLOWED_DTYPE_STRINGS:
                floaty = node.value.lstrip("<>=|").startswith(("f", "c", "d", "e", "g", "float", "complex"))
                self.refuse(node, f"dtype {node.value!r}: " + (NUMPY_FLOAT_DTYPE_WHY if floaty else
                                                               "not an explicit-width integer dtype; "
                                                               + NUMPY_ALLOW_LIST_WHY))
        elif isinstance(node, ast.Name):
            if self.aliases.get(node.id, "").startswith("numpy.") or node.id in BUILTIN_WHY or node.id == "bool":
                return  # from-numpy imports were checked at the import; float/complex by visit_Name
            if node.id == "int":
                self.refuse(node, "dtype int: platform-dependent width (C long); use np.int64")
            elif node.id in {"object", "str", "bytes"}:
                self.refuse(node, f"dtype {node.id}: not an explicit-width integer dtype; " + NUMPY_ALLOW_LIST_WHY)
            else:
                self.refuse(node, f"dtype given by the name {node.id}: cannot be checked here; spell an integer "
                                  "dtype (np.int64, np.uint64, bool) at the call")
        elif isinstance(node, ast.Attribute):
            return  # np.X is judged by visit_Attribute; other_array.dtype copies an existing dtype
        elif isinstance(node, ast.Call) and self.qualify(node.func) == "numpy.dtype":
            return  # np.dtype(x) checks its own argument
        else:
            self.refuse(node, "dtype computed at run time: cannot be checked; spell an integer dtype")

    def check_numpy_call(self, node: ast.Call, name: str) -> None:
        if name == "dtype" and node.args:
            self.check_dtype(node.args[0])
            return
        for arg in node.args:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value not in NUMPY_OPTION_STRINGS:
                self.check_dtype(arg)
            elif isinstance(arg, ast.Name) and arg.id == "int":
                self.check_dtype(arg)
        if name == "argsort":
            self.check_stable(node, kind_position=2)
        if name == "unique":
            keep_sorted = _keyword(node, "sorted")
            if keep_sorted is not None and not (isinstance(keep_sorted, ast.Constant) and keep_sorted.value is True):
                self.refuse(node, "np.unique(sorted=...) other than True returns hash-table order, which is an "
                                  "implementation detail; keep the default sorted output")

    def check_stable(self, node: ast.Call, kind_position: int) -> None:
        kind = node.args[kind_position] if len(node.args) > kind_position else _keyword(node, "kind")
        stable = _keyword(node, "stable")
        if isinstance(stable, ast.Constant) and stable.value is True:
            return
        if isinstance(kind, ast.Constant) and kind.value in STABLE_SORT_KINDS:
            return
        self.refuse(node, "argsort without kind='stable': the tie order of the default quicksort depends on the "
                          "CPU's SIMD dispatch (x86-simd-sort on AVX-512/AVX2), so replicas may order equal keys "
                          "differently")

    # imports and excepts

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            why = _module_refusal(a.name)
            if why:
                self.refuse(node, f"import {a.name}: {why}")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or not node.module:
            return
        why = _module_refusal(node.module)
        if why:
            self.refuse(node, f"from {node.module} import ...: {why}")
            return
        for a in node.names:
            if a.name == "*":
                self.refuse(node, f"from {node.module} import *: hides which names the file binds, so aliases "
                                  "cannot be tracked")
                continue
            why = self.attribute_refusal(node.module, a.name)
            if why:
                self.refuse(node, f"from {node.module} import {a.name}: {why}")

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is None:
            self.refuse(node, "bare except: only AppError may be caught in app/; anything else must halt the node")
            return
        names = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
        if any(isinstance(n, ast.Name) and n.id in BROAD_EXCEPTIONS for n in names):
            self.refuse(node, "broad except: only AppError may be caught in app/; anything else must halt the node")


def _keyword(node: ast.Call, name: str) -> ast.AST | None:
    for kw in node.keywords:
        if kw.arg == name:
            return kw.value
    return None


def violations(source: str, filename: str = "<src>") -> list[str]:
    """One ``file:line: what: why`` per refused construct in ``source`` (empty when the file is clean)."""
    return _Guard(ast.parse(source, filename), filename).run()
