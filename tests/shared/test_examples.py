"""shared.callbacks.ExampleLogger: one way for every project to show validation examples in TensorBoard."""

from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from shared.audio import MelFrontEnd
from shared.callbacks import ExampleLogger, Examples, MelExampleLogger, side_by_side, sound_pictures
from shared.callbacks.examples import GAP


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


def validate(callback, trainer, module, batches: list[dict]) -> None:
    """The callback's hooks as one validation calls them: every batch, then the end of the validation."""
    for index, batch in enumerate(batches):
        callback.on_validation_batch_end(trainer, module, None, batch, index)
    callback.on_validation_end(trainer, module)


def image_bytes(events, tag: str) -> tuple[int, int, int]:
    image = events.Images(tag)[0]
    return image.width, image.height, image.step


class MelModule:
    """Returns mels in [0, 1]: the callback draws them and makes their sound with Griffin-Lim."""

    def examples(self, batch):
        return {"input": batch["mel"], "reconstruction": batch["mel"].flip(-1)}


class ExamplesModule:
    """Makes its own pictures, sound and images, and records what it was given."""

    def __init__(self):
        self.calls = []

    def examples(self, batch):
        self.calls.append(batch)
        n = len(batch["mel"])
        return Examples(
            {"side_by_side": torch.rand(n, 8, 20)},
            {"generated": torch.zeros(n, 800)},
            8000,
            images={"generated_real": torch.rand(n, 3, 6, 14)},
        )


def test_the_old_name_is_the_same_callback():
    assert MelExampleLogger is ExampleLogger  # the class path in configs of runs made before the rename


@pytest.mark.parametrize("audio", [True, False])
def test_mels_are_drawn_and_vocoded(tmp_path, audio):
    trainer = trainer_logging_to(tmp_path)
    batch = {"mel": torch.rand(3, 80, 16), "clip_id": ["a", "b", "c"]}
    validate(ExampleLogger(n_examples=2, audio=audio), trainer, MelModule(), [batch])
    events = logged(trainer)
    assert set(events.Tags()["images"]) == {
        f"examples/{n}/{i}" for n in ("input", "reconstruction") for i in (0, 1)
    }
    assert set(events.Tags()["audio"]) == (
        {f"audio/{n}/{i}" for n in ("input", "reconstruction") for i in (0, 1)} if audio else set()
    )
    if audio:
        assert events.Audio("audio/input/0")[0].sample_rate == 22050  # the specvqgan preset's Griffin-Lim


def test_a_module_s_own_pictures_sound_and_images_are_written_as_they_are(tmp_path):
    trainer = trainer_logging_to(tmp_path, step=9)
    batch = {"mel": torch.rand(4, 80, 16)}
    validate(ExampleLogger(n_examples=3), trainer, ExamplesModule(), [batch])
    events = logged(trainer)
    assert set(events.Tags()["images"]) == {
        f"examples/{name}/{i}" for name in ("side_by_side", "generated_real") for i in range(3)
    }
    assert set(events.Tags()["audio"]) == {f"audio/generated/{i}" for i in range(3)}
    assert image_bytes(events, "examples/side_by_side/0") == (20, 8, 9)
    assert image_bytes(events, "examples/generated_real/2") == (14, 6, 9)
    assert events.Audio("audio/generated/0")[0].sample_rate == 8000


def test_an_rgb_image_keeps_its_colours_and_orientation(tmp_path):
    """Row 0 of an image is its top (pictures are flipped, images are not) and its channels are R, G, B."""
    from io import BytesIO

    import numpy as np
    from PIL import Image

    image = torch.zeros(1, 3, 4, 5)
    image[0, 0, 0] = 1.0  # a red top row
    image[0, 2, 3] = 1.0  # a blue bottom row
    trainer = trainer_logging_to(tmp_path)
    ExampleLogger().write(trainer.loggers[0].experiment, Examples(images={"frame": image}), 1)
    encoded = logged(trainer).Images("examples/frame/0")[0].encoded_image_string
    pixels = np.asarray(Image.open(BytesIO(encoded)).convert("RGB"))
    assert pixels.shape == (4, 5, 3)
    assert (pixels[0] == [255, 0, 0]).all() and (pixels[3] == [0, 0, 255]).all()
    assert (pixels[1:3] == 0).all()


def test_examples_come_once_the_validation_is_over_from_the_first_batch(tmp_path):
    """The module sees the first n clips of the first batch, only at the end (when it has gathered the split)."""
    trainer = trainer_logging_to(tmp_path)
    module, callback = ExamplesModule(), ExampleLogger(n_examples=2)
    first = {"mel": torch.rand(3, 80, 16), "clip_id": ["a", "b", "c"]}
    second = {"mel": torch.rand(3, 80, 16), "clip_id": ["d", "e", "f"]}
    callback.on_validation_batch_end(trainer, module, None, first, 0)
    callback.on_validation_batch_end(trainer, module, None, second, 1)
    assert module.calls == []
    kept = first["mel"][:2].clone()
    first["mel"].zero_()  # a loader may reuse a batch's memory: the callback keeps its own copy
    callback.on_validation_end(trainer, module)
    assert len(module.calls) == 1 and module.calls[0]["clip_id"] == ["a", "b"]
    torch.testing.assert_close(module.calls[0]["mel"], kept)
    callback.on_validation_end(trainer, module)  # a validation that kept nothing calls nothing
    assert len(module.calls) == 1


def test_nothing_is_logged_in_the_sanity_check_off_rank_0_or_in_the_epochs_between(tmp_path):
    trainer = trainer_logging_to(tmp_path)
    batch = {"mel": torch.rand(2, 80, 16)}
    module, callback = ExamplesModule(), ExampleLogger(every_n_epochs=2)
    trainer.sanity_checking = True
    validate(callback, trainer, module, [batch])
    trainer.sanity_checking, trainer.is_global_zero = False, False
    validate(callback, trainer, module, [batch])
    trainer.is_global_zero, trainer.current_epoch = True, 1
    validate(callback, trainer, module, [batch])
    assert module.calls == [] and logged(trainer).Tags()["images"] == []
    trainer.current_epoch = 2
    validate(callback, trainer, module, [batch])
    assert len(module.calls) == 1


def test_side_by_side_puts_a_white_gap_between_pictures_and_images():
    left, right = torch.zeros(2, 5, 3), torch.full((2, 5, 4), 0.5)
    joined = side_by_side(left, right)
    assert joined.shape == (2, 5, 3 + GAP + 4)
    assert (
        (joined[..., :3] == 0).all()
        and (joined[..., 3 : 3 + GAP] == 1).all()
        and (joined[..., -4:] == 0.5).all()
    )
    images = side_by_side(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))
    assert images.shape == (1, 3, 4, 4 * 3 + 2 * GAP)


def test_sound_pictures_are_specvqgan_mels_at_the_sound_s_rate():
    """At 22.05 kHz they are SpecVQGAN's features; at 16 kHz the same mel up to the Nyquist frequency, in
    [0, 1], a tone's energy in the band of its frequency."""
    torch.manual_seed(0)
    wave = torch.rand(2, 22050) * 2 - 1
    torch.testing.assert_close(sound_pictures(wave, 22050), MelFrontEnd.from_preset("specvqgan")(wave))
    t = torch.arange(16000) / 16000
    tones = torch.stack([0.5 * torch.sin(2 * torch.pi * 500 * t), 0.5 * torch.sin(2 * torch.pi * 4000 * t)])
    pictures = sound_pictures(tones, 16000)
    assert pictures.shape == (2, 80, 1 + 16000 // 256)
    assert pictures.min() >= 0 and pictures.max() <= 1
    loudest = pictures.mean(dim=-1).argmax(dim=-1)
    assert loudest[0] < loudest[1]


def test_a_sound_shorter_than_half_an_fft_window_is_drawn_padded_with_silence():
    short = torch.rand(2, 300) - 0.5
    padded = torch.cat([short, torch.zeros(2, 513 - 300)], dim=-1)
    torch.testing.assert_close(sound_pictures(short, 16000), sound_pictures(padded, 16000))
