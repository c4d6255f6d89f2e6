"""The toy image-tower stage: BriVL's architecture at toy size learns the toy frames' classes above chance, and
its checkpoint loads back as a frozen `ImageTower` that classifies."""

from __future__ import annotations

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
from shared.runs import UserError

CONFIG = Path(__file__).resolve().parents[3] / "projects" / "wavbrivl" / "configs" / "toy_image_tower.yaml"


def toy_tower_args() -> dict:
    """The toy config's tower, so the test trains what `make train` trains."""
    config = yaml.safe_load(CONFIG.read_text())
    return config["model"]["init_args"]["tower"]["init_args"]


@pytest.mark.slow
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
    module = ImageTowerClassification(BriVLImageTower(**toy_tower_args()), n_classes=6, lr=3e-3)
    trainer = Trainer(
        max_steps=60,
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

    # every frame of the evaluation clips (the middle frame alone may show only the background)
    frames, labels = [], []
    for split in ("valid", "test"):
        dataset = data.split(split)
        for record in dataset.records:
            clip_frames = torch.from_numpy(np.load(dataset.frame_cache.path(record.clip_id))).float() / 255
            frames.append(clip_frames)
            labels.append(torch.full((len(clip_frames),), record.label_id))
    frames, labels = torch.cat(frames), torch.cat(labels)
    tower = load_image_tower(checkpoint)
    assert isinstance(tower, ImageTower) and tower.embed_dim == 64 and tower.image_size == 64
    with torch.no_grad():
        logits = tower.classify(frames)
        module.eval()
        torch.testing.assert_close(logits, module(frames), rtol=1e-5, atol=1e-4)
    accuracy = (logits.argmax(-1) == labels).float().mean().item()
    # frames without a shape cannot be told apart; chance is 1/6 over all frames
    assert accuracy > 1 / 6 + 0.1, accuracy
    module.train()  # a parent's .train() leaves the loaded tower frozen
    tower.train()
    assert not tower.training and not any(p.requires_grad for p in tower.parameters())


def test_load_image_tower_errors(tmp_path):
    with pytest.raises(UserError, match="absent: no such run folder or checkpoint"):
        load_image_tower(tmp_path / "absent")
    torch.save({"state_dict": {}, "hyper_parameters": {}}, tmp_path / "other.ckpt")
    with pytest.raises(UserError, match=r"other\.ckpt: no tower_config"):
        load_image_tower(tmp_path / "other.ckpt")
