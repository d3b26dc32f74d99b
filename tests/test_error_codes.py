"""Error codes are stable and documented: every registered code is unique and appears in the docs."""

import pathlib
import re

from app import errors

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"


def test_codes_are_unique_sorted_and_named():
    codes = errors.all_codes()
    assert [c.code for c in codes] == sorted({c.code for c in codes})
    assert len({c.name for c in codes}) == len(codes)
    assert all(re.fullmatch(r"[a-z][a-z0-9_]+", c.name) for c in codes)


def test_every_code_is_documented_with_its_name():
    text = (DOCS / "transactions.md").read_text() + (DOCS / "exchange.md").read_text()
    missing = [f"{c.code} {c.name}" for c in errors.all_codes()
               if not re.search(rf"\b{c.code}\b[^\n]*\b{c.name}\b", text)]
    assert missing == []


def test_registering_a_code_twice_is_refused():
    import pytest

    with pytest.raises(RuntimeError, match="registered twice"):
        errors.register("tx", 2, "again")
