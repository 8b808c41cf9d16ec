"""Shared fixtures: the data folder (../shared/data or $VERACITY_DATA), tiny models, the real smollm2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_DEFAULT_DATA = REPO.parent / "shared" / "data"
if "VERACITY_DATA" not in os.environ and _DEFAULT_DATA.is_dir():
    os.environ["VERACITY_DATA"] = str(_DEFAULT_DATA)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def one_thread():
    """torch on one thread for the test (the CI box is shared: oversubscribed threads are 10-50x slower)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def cli():
    """`cli(args, code=0) -> output`: run the veracity CLI in-process, assert its exit code."""
    from typer.testing import CliRunner

    from veracity.cli.main import app

    def invoke(args, code: int = 0) -> str:
        res = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
        assert res.exit_code == code, res.output
        return res.output

    return invoke


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = os.environ.get("VERACITY_DATA")
    if not d or not Path(d).is_dir():
        pytest.skip("no data folder: set VERACITY_DATA or put shared/ beside the repo")
    return Path(d)


@pytest.fixture(scope="session")
def smollm2():
    """The real default model (converted once to the cache, then ~1 s to load)."""
    from veracity.models import load

    return load("smollm2", device="cpu")


@pytest.fixture(scope="session")
def tiny_llama():
    from veracity.models import load

    return load("tiny-llama", device="cpu")
