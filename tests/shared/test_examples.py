"""shared.callbacks.MelExampleLogger: one way for every project to show validation examples in TensorBoard."""

from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from shared.callbacks import Examples, MelExampleLogger


def trainer_logging_to(path, step: int = 5) -> SimpleNamespace:
    logger = TensorBoardLogger(path, name="", version="")
    return SimpleNamespace(
        sanity_checking=False, is_global_zero=True, current_epoch=0, global_step=step, loggers=[logger]
    )


def logged(trainer) -> dict:
    trainer.loggers[0].experiment.flush()
    events = EventAccumulator(trainer.loggers[0].log_dir, size_guidance={"images": 0, "audio": 0})
    events.Reload()
    return events


class MelModule:
    """Returns mels in [0, 1]: the callback draws them and makes their sound with Griffin-Lim."""

    def examples(self, batch):
        return {"input": batch["mel"], "reconstruction": batch["mel"].flip(-1)}


class ExamplesModule:
    """Makes its own pictures and sound."""

    def examples(self, batch):
        n = len(batch["mel"])
        return Examples({"side_by_side": torch.rand(n, 8, 20)}, {"generated": torch.zeros(n, 800)}, 8000)


@pytest.mark.parametrize("audio", [True, False])
def test_mels_are_drawn_and_vocoded(tmp_path, audio):
    trainer = trainer_logging_to(tmp_path)
    batch = {"mel": torch.rand(3, 80, 16), "clip_id": ["a", "b", "c"]}
    MelExampleLogger(n_examples=2, audio=audio).on_validation_batch_end(trainer, MelModule(), None, batch, 0)
    events = logged(trainer)
    assert set(events.Tags()["images"]) == {
        f"examples/{n}/{i}" for n in ("input", "reconstruction") for i in (0, 1)
    }
    assert set(events.Tags()["audio"]) == (
        {f"audio/{n}/{i}" for n in ("input", "reconstruction") for i in (0, 1)} if audio else set()
    )
    if audio:
        assert events.Audio("audio/input/0")[0].sample_rate == 22050  # the specvqgan preset's Griffin-Lim


def test_a_module_s_own_pictures_and_sound_are_written_as_they_are(tmp_path):
    trainer = trainer_logging_to(tmp_path, step=9)
    batch = {"mel": torch.rand(4, 80, 16)}
    MelExampleLogger(n_examples=3).on_validation_batch_end(trainer, ExamplesModule(), None, batch, 0)
    events = logged(trainer)
    assert set(events.Tags()["images"]) == {f"examples/side_by_side/{i}" for i in range(3)}
    assert set(events.Tags()["audio"]) == {f"audio/generated/{i}" for i in range(3)}
    image, sound = events.Images("examples/side_by_side/0")[0], events.Audio("audio/generated/0")[0]
    assert (image.width, image.height, image.step) == (20, 8, 9) and sound.sample_rate == 8000


def test_nothing_is_logged_in_the_sanity_check_or_after_the_first_batch(tmp_path):
    trainer = trainer_logging_to(tmp_path)
    batch = {"mel": torch.rand(2, 80, 16)}
    callback = MelExampleLogger()
    callback.on_validation_batch_end(trainer, ExamplesModule(), None, batch, 1)
    trainer.sanity_checking = True
    callback.on_validation_batch_end(trainer, ExamplesModule(), None, batch, 0)
    assert logged(trainer).Tags()["images"] == []
