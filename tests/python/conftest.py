"""pytest fixtures for frugal's onnxruntime oracle tests (see frugal_testlib.py for helpers)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))

import frugal_testlib as tl  # noqa: E402


@pytest.fixture(scope="session")
def repo() -> Path:
    return tl.REPO


@pytest.fixture(scope="session")
def testdata() -> Path:
    if not tl.TESTDATA.is_dir():
        pytest.fail(f"shared test data not found at {tl.TESTDATA} (expected ../shared/testdata beside the repo)")
    return tl.TESTDATA


@pytest.fixture(scope="session")
def frugal_bin() -> Path:
    p = tl.frugal_bin_path()
    if not p.is_file():
        pytest.fail(f"frugal binary not found at {p}: build it (cmake --build build --target frugal) "
                    f"or set FRUGAL_BIN=/path/to/frugal")
    return p
