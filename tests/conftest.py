"""Fixtures shared by the whole suite: the team's real test data, a small toy dataset, offline hubs."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test may download anything

REPO = Path(__file__).resolve().parents[1]
TEAM_DATA = REPO.parent / "shared" / "data"  # ../shared beside the repo (not the `shared` package)
DEMO = TEAM_DATA / "specvqgan-demo"


def resolved_config(config: Path) -> dict:
    """What `avgen fit --config <config> --print_config` prints: the config over its bases and every default."""
    import yaml

    from shared.cli import AvgenCLI

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.raises(SystemExit) as exit_info:
        AvgenCLI(args=["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code == 0
    return yaml.safe_load(printed.getvalue())


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny models (`pytestmark = pytest.mark.usefixtures("one_thread")`):
    their ops are too small to share between threads, and on a busy two-core machine two OpenMP threads
    spent most of their time waiting for each other (a toy step many times slower; README, "Test suite").
    Module scope, so that a module's own module-scoped fixtures are computed under it too."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def demo_root() -> Path:
    if not DEMO.is_dir():
        raise FileNotFoundError(
            f"{DEMO}: the team's test data must sit beside the repo (cp -r ../shared ...)"
        )
    return DEMO


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory) -> Path:
    """A small toy dataset (6 classes x 6 train / 2 valid / 2 test clips), generated once per session."""
    from shared.data.toy import generate_toy_dataset

    return generate_toy_dataset(tmp_path_factory.mktemp("toy"), seed=0, n_train=6, n_valid=2, n_test=2)
