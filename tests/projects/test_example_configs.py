"""Every config of a stage whose module shows validation examples (`examples(batch)`) lists the callback that
writes them to TensorBoard (`shared.callbacks.ExampleLogger`), with a few examples.

The configs are read along their `extends:` chains as `avgen` merges them (tests/shared/test_base_configs.py:
a scalar or a list in a later file replaces the earlier one, `callbacks+:` appends), without resolving each
through LightningCLI, which would take a third of a second per config."""

import importlib
from pathlib import Path

import pytest
import yaml

from shared.callbacks import ExampleLogger
from shared.cli import config_chain
from tests.conftest import REPO

CONFIGS = sorted((REPO / "projects").glob("*/configs/*.yaml"))
LOGGER = f"{ExampleLogger.__module__.rsplit('.', 1)[0]}.{ExampleLogger.__name__}"  # as configs name it


def sections(config: Path, name: str) -> list[dict]:
    """The `name` section of each file of the config's chain, bases first."""
    return [
        (yaml.safe_load(Path(file).read_text()) or {}).get(name) or {} for file in config_chain(str(config))
    ]


def model_class(config: Path) -> type:
    paths = [model["class_path"] for model in sections(config, "model") if "class_path" in model]
    module, _, name = paths[-1].rpartition(".")
    return getattr(importlib.import_module(module), name)


def callbacks(config: Path) -> list[dict]:
    listed: list[dict] = []
    for trainer in sections(config, "trainer"):
        listed = list(trainer.get("callbacks", listed)) + list(trainer.get("callbacks+", []))
    return listed


SHOWING = [config for config in CONFIGS if hasattr(model_class(config), "examples")]


def test_every_project_has_a_stage_that_shows_examples():
    assert {config.parts[-3] for config in SHOWING} == {config.parts[-3] for config in CONFIGS}


@pytest.mark.parametrize("config", SHOWING, ids=lambda p: f"{p.parts[-3]}/{p.stem}")
def test_a_stage_with_examples_lists_the_example_logger(config):
    loggers = [c for c in callbacks(config) if c["class_path"] == LOGGER]
    assert len(loggers) == 1, [c["class_path"] for c in callbacks(config)]
    settings = loggers[0].get("init_args", {})
    assert 1 <= settings.get("n_examples", 4) <= 4 and settings.get("every_n_epochs", 1) >= 1
