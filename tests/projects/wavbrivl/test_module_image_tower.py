"""The toy image-tower stage: BriVL's architecture at toy size learns the toy frames' classes above chance, and
its checkpoint loads back as a frozen `ImageTower` that classifies."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch import Trainer

from projects.wavbrivl.data import WavBriVLVGGSoundDataModule
from projects.wavbrivl.models.image_tower import BriVLImageTower, ImageTower
from projects.wavbrivl.module_image_tower import ImageTowerClassification, load_image_tower
from shared.data import VGGSoundIndex
from shared.data.toy import event_frames
from shared.runs import UserError

CONFIG = Path(__file__).resolve().parents[3] / "projects" / "wavbrivl" / "configs" / "toy_image_tower.yaml"


def toy_model_args() -> dict:
    """The toy config's model arguments, so the test trains what `make train` trains."""
    return yaml.safe_load(CONFIG.read_text())["model"]["init_args"]


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_toy_stage_learns_classes_and_loads_back(toy_root, tmp_path):
    torch.manual_seed(0)
    data = WavBriVLVGGSoundDataModule(
        VGGSoundIndex(toy_root / "vggsound", split_dir=None, valid_fraction=0.2),
        cache_dir=str(tmp_path / "cache"),
        audio_seconds=0.5,
        image_size=64,
        frame_fps=25.0,
        batch_size=12,
    )
    args = toy_model_args()
    module = ImageTowerClassification(
        BriVLImageTower(**args["tower"]["init_args"]), args["n_classes"], args["lr"]
    )
    trainer = Trainer(
        max_steps=180,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        num_sanity_val_steps=0,
        val_check_interval=None,
        check_val_every_n_epoch=1000,  # validation below, once, on all evaluation clips
    )
    trainer.fit(module, datamodule=data)
    checkpoint = tmp_path / "toy.ckpt"
    trainer.save_checkpoint(checkpoint)

    # the frames where a shape appears (`events.csv`) of the evaluation clips: the others show only background
    onsets = {row["clip_id"]: row["onsets"] for row in csv.DictReader((toy_root / "events.csv").open())}
    frames, labels = [], []
    for split in ("valid", "test"):
        dataset = data.split(split)
        for record in dataset.records:
            clip_frames = np.load(dataset.frame_cache.path(record.clip_id))
            shown = [
                i
                for i in event_frames([float(t) for t in onsets[record.clip_id].split()])
                if i < len(clip_frames)
            ]
            frames.append(torch.from_numpy(clip_frames[shown]).float() / 255)
            labels.append(torch.full((len(shown),), record.label_id))
    frames, labels = torch.cat(frames), torch.cat(labels)
    tower = load_image_tower(checkpoint)
    assert isinstance(tower, ImageTower) and tower.embed_dim == 64 and tower.image_size == 64
    with torch.no_grad():
        logits = tower.classify(frames)
        module.eval()
        torch.testing.assert_close(logits, module(frames), rtol=1e-5, atol=1e-4)
    accuracy = (logits.argmax(-1) == labels).float().mean().item()
    # above chance (1 / 6) by more than 3 standard deviations of a guesser's accuracy on these frames
    assert accuracy > 1 / 6 + 3 * math.sqrt(1 / 6 * 5 / 6 / len(labels)), (accuracy, len(labels))
    module.train()  # a parent's .train() leaves the loaded tower frozen
    tower.train()
    assert not tower.training and not any(p.requires_grad for p in tower.parameters())


def test_load_image_tower_errors(tmp_path):
    with pytest.raises(UserError, match="absent: no such run folder or checkpoint"):
        load_image_tower(tmp_path / "absent")
    torch.save({"state_dict": {}, "hyper_parameters": {}}, tmp_path / "other.ckpt")
    with pytest.raises(UserError, match=r"other\.ckpt: no tower_config"):
        load_image_tower(tmp_path / "other.ckpt")
