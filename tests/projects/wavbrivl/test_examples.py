"""What WavBriVL's audio-tower stage shows in TensorBoard at validation: retrieval examples
(`WavBriVLTraining.examples`), on the toy clips with the tiny towers of test_module_audio_tower."""

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from projects.wavbrivl.models.audio_tower import WavLMAudioTower
from projects.wavbrivl.module_audio_tower import HIT, MISS, WavBriVLTraining
from shared.callbacks import ExampleLogger
from shared.callbacks.examples import GAP
from shared.contrastive import similarity
from tests.shared.test_examples import logged

from . import test_module_audio_tower
from .test_audio_tower import TINY
from .test_module_audio_tower import EMBED, StandInImageTower, datamodule

data_cache = test_module_audio_tower.data_cache  # its fixture: the toy clips' feature cache, decoded once

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE, K = 32, 3  # the frames of test_module_audio_tower's data module; frames retrieved per clip


def test_each_clip_shows_its_frame_and_the_nearest_frames_of_the_split(toy_root, data_cache, tmp_path):
    pl.seed_everything(0, verbose=False)
    tower = WavLMAudioTower(TINY, embed_dim=EMBED, trainable="all")
    model = WavBriVLTraining(tower, StandInImageTower(), queue_size=8, example_top_k=K)
    data = datamodule(toy_root, data_cache)
    trainer = pl.Trainer(
        accelerator="cpu", logger=TensorBoardLogger(tmp_path, name="", version=""),
        callbacks=[ExampleLogger(n_examples=2)], enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.validate(model, datamodule=data)
    events = logged(trainer)
    assert set(events.Tags()["images"]) == {"examples/retrieval/0", "examples/retrieval/1"}
    image = events.Images("examples/retrieval/0")[0]
    assert (image.height, image.width) == (SIZE, (1 + K) * SIZE + K * GAP)

    # the same retrieval worked out here from the split's items, each clip's audio against every frame
    split = data.split("valid")
    items = [split[i] for i in range(len(split))]
    assert len(items) > K
    with torch.no_grad():
        audio = model.audio_tower(
            torch.stack([item["wave"] for item in items]), torch.tensor([item["lengths"] for item in items])
        )
        frames = torch.stack([item["image"] for item in items])
        nearest = similarity(audio, model.image_tower(frames)).topk(K, dim=1).indices
        batch = next(iter(data.val_dataloader()))
        pictures = model.examples({key: value[:2] for key, value in batch.items()}).images["retrieval"]
    assert pictures.shape == (2, 3, SIZE, (1 + K) * SIZE + K * GAP)
    for clip in range(2):
        torch.testing.assert_close(pictures[clip, ..., :SIZE], frames[clip])
        for rank, j in enumerate(nearest[clip].tolist()):
            start = (1 + rank) * (SIZE + GAP)
            shown = pictures[clip, :, :, start : start + SIZE]
            torch.testing.assert_close(shown[:, 2:-2, 2:-2], frames[j, :, 2:-2, 2:-2])
            outline = HIT if items[j]["label"] == items[clip]["label"] else MISS
            torch.testing.assert_close(shown[:, 0, 0], torch.tensor(outline))
