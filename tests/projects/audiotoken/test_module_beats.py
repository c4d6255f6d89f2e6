"""The toy BEATs stage (`projects.audiotoken.module_beats`): it trains on toy clips, and the `beats.pt` it
writes beside its checkpoints loads through the official loading path with the same features."""

from __future__ import annotations

import csv

import pytest
import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader

from projects.audiotoken.convert import load_official_beats
from projects.audiotoken.module_beats import BEATsClassifierTraining
from shared.audio.io import load_audio
from shared.callbacks import LastCheckpoint
from shared.encoders.beats import BEATsConfig, load_beats

pytestmark = pytest.mark.usefixtures("one_thread")

TOY_CFG = BEATsConfig(
    input_patch_size=16,
    embed_dim=32,
    encoder_layers=12,
    encoder_embed_dim=32,
    encoder_ffn_embed_dim=64,
    encoder_attention_heads=2,
    conv_pos=16,
    conv_pos_groups=4,
    deep_norm=True,
    relative_position_embedding=True,
    max_distance=800,
    gru_rel_pos=True,
    predictor_class=6,
)


def toy_clips(root, split: str, seconds: float = 2.0) -> list[dict]:
    """The toy VGGSound's `split` clips as batch items (`wave` at 16 kHz, `label`), read directly."""
    folder = root / "vggsound"
    with open(folder / "vggsound.csv") as f:
        rows = list(csv.reader(f))
    labels = sorted({row[2] for row in rows})
    items = []
    for ytid, start, label, row_split in rows:
        if row_split != split:
            continue
        (path,) = (folder / "audio").glob(f"{ytid}_{int(start) * 1000}_*.wav")
        wave = load_audio(path, sr=16_000, duration=seconds, loop=True)
        items.append({"wave": wave, "label": torch.tensor(labels.index(label))})
    return items


def test_training_writes_an_official_file_that_loads_back(toy_root, tmp_path):
    torch.manual_seed(0)
    module = BEATsClassifierTraining(TOY_CFG, lr=1e-3)
    initial = {k: v.clone() for k, v in module.model.state_dict().items()}
    train = DataLoader(toy_clips(toy_root, "train"), batch_size=6, shuffle=True)
    valid = DataLoader(toy_clips(toy_root, "test"), batch_size=6)
    trainer = Trainer(
        max_steps=4,
        default_root_dir=tmp_path,
        callbacks=[LastCheckpoint(every_n_steps=None)],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1,
        val_check_interval=4,
    )
    trainer.fit(module, train, valid)
    assert 0.0 <= trainer.callback_metrics["val/acc"] <= 1.0
    trained = module.model.state_dict()
    assert not torch.equal(trained["encoder.layers.11.fc2.weight"], initial["encoder.layers.11.fc2.weight"])

    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    loaded = load_beats(tmp_path / "beats.pt")
    assert loaded.predictor is None
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, trained[key]), key
    wav = torch.stack([item["wave"] for item in toy_clips(toy_root, "test")[:2]])
    module.model.eval()
    with torch.no_grad():
        assert torch.equal(load_official_beats(tmp_path / "beats.pt")(wav), module.model(wav))
