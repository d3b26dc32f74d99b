import pathlib

import pytest

from tests.helpers import Replica


@pytest.fixture
def replica(tmp_path: pathlib.Path):
    r = Replica(tmp_path / "db")
    r.init_chain()
    r.block([])  # commit genesis with block 1 so queries see it
    yield r
    r.close()
