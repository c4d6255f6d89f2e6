"""Training Wav2CLIP (`shared.wav2clip_training`) on an in-test synthetic audio-visual set: the
cross-projection InfoNCE falls, retrieval beats chance, and the checkpoint loads through `load_wav2clip`;
targets from a frozen CLIP image encoder on the batch's frame (AudioToken's toy Wav2CLIP)."""

from __future__ import annotations

import math

import pytest
import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader, Dataset

from shared.encoders import load_clip_image_text
from shared.encoders.wav2clip import Wav2CLIP, load_wav2clip
from shared.wav2clip_training import Wav2CLIPTraining
from tests.shared.tiny_hf_clip import save_tiny_clip

N_CLASSES, CLIP_DIM, N_FRAMES, N_SAMPLES = 4, 64, 6, 8_000


class ToneClips(Dataset):
    """Class c: a tone at 300 x 2^c Hz with random phase and noise; its frames: the class's CLIP prototype
    plus per-frame noise. What is heard identifies what is seen only through the class."""

    def __init__(self, n: int, seed: int):
        gen = torch.Generator().manual_seed(seed)
        prototypes = torch.nn.functional.normalize(
            torch.randn(N_CLASSES, CLIP_DIM, generator=torch.Generator().manual_seed(0)), dim=-1
        )
        self.labels = torch.arange(n) % N_CLASSES
        t = torch.arange(N_SAMPLES) / 16_000
        phase = 2 * math.pi * torch.rand(n, 1, generator=gen)
        hz = 300 * 2.0 ** self.labels[:, None]
        self.wave = torch.sin(2 * math.pi * hz * t + phase) + 0.3 * torch.randn(n, N_SAMPLES, generator=gen)
        self.clip_feats = prototypes[self.labels][:, None] + 0.05 * torch.randn(
            n, N_FRAMES, CLIP_DIM, generator=gen
        )

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"wave": self.wave[i], "clip_feats": self.clip_feats[i], "label": self.labels[i]}


def tiny_module() -> Wav2CLIPTraining:
    torch.manual_seed(0)
    return Wav2CLIPTraining(
        Wav2CLIP(widths=(8, 16, 16, 32), blocks=(1, 1, 1, 1), embed_dim=CLIP_DIM), lr=3e-3
    )


def validation_loss(module: Wav2CLIPTraining, loader: DataLoader) -> float:
    """The batch-size-weighted mean loss over `loader`, in eval mode."""
    module.eval()
    with torch.no_grad():
        total = sum(module.loss(batch)[0].item() * len(batch["wave"]) for batch in loader)
    return total / len(loader.dataset)


def test_loss_is_the_mean_of_the_two_symmetric_terms():
    module = tiny_module().eval()
    batch = next(iter(DataLoader(ToneClips(8, seed=1), batch_size=8)))
    with torch.no_grad():
        loss, audio, image = module.loss(batch)
        encoded = module.model.audio_encoder(batch["wave"])
        expected = (
            module.loss_audio_space(encoded, module.image_transform(image))
            + module.loss_clip_space(module.model.audio_transform(encoded), image)
        ) / 2
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(image, batch["clip_feats"].mean(dim=1))
    assert audio.shape == (8, CLIP_DIM)
    # untrained: near log(B), the loss of uninformative logits
    assert abs(loss.item() - math.log(8)) < 0.5 * math.log(8)
    with pytest.raises(ValueError, match=r"clip_feats \[B, F, 64\]"):
        module.loss({"wave": batch["wave"], "clip_feats": batch["clip_feats"][..., :32]})


@pytest.mark.slow
def test_toy_training_lowers_the_loss_and_retrieves_above_chance(tmp_path):
    module = tiny_module()
    train = DataLoader(ToneClips(32, seed=1), batch_size=8, shuffle=True)
    valid = DataLoader(ToneClips(16, seed=2), batch_size=8)
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=5,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[],
    )
    before = validation_loss(module, valid)
    trainer.fit(module, train, valid)
    after = trainer.validate(module, valid, verbose=False)[0]
    assert after["val/loss"] == pytest.approx(validation_loss(module, valid), rel=1e-5)
    assert after["val/loss"] < 0.7 * before
    assert after["val/r1_chance"] == pytest.approx(1 / 16)
    assert after["val/r1"] > 2 * after["val/r1_chance"]  # 4 classes: a class-level match is 1/4
    assert after["val/class_r1_chance"] == pytest.approx(1 / 4)
    assert after["val/class_r1"] > 2 * after["val/class_r1_chance"]

    ckpt = next(tmp_path.rglob("*.ckpt"))
    loaded = load_wav2clip(ckpt)
    assert loaded.conversion_report.prefix == "model."
    assert {k.split(".")[0] for k in loaded.conversion_report.skipped} == {
        "image_transform",
        "loss_audio_space",
        "loss_clip_space",
    }
    wave = ToneClips(4, seed=3).wave
    with torch.no_grad():
        torch.testing.assert_close(loaded(wave), module.model.eval()(wave))


class FrameClips(Dataset):
    """AudioToken's batch keys: 16-kHz `wave`, one frame `image` in [-1, 1] (coloured by class), `label`."""

    def __init__(self, n: int, seed: int):
        gen = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % N_CLASSES
        self.wave = torch.randn(n, N_SAMPLES, generator=gen)
        colours = torch.rand(N_CLASSES, 3, 1, 1, generator=torch.Generator().manual_seed(0)) * 2 - 1
        self.image = (colours[self.labels] + 0.1 * torch.randn(n, 3, 40, 64, generator=gen)).clamp(-1, 1)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"wave": self.wave[i], "image": self.image[i], "label": self.labels[i]}


@pytest.mark.slow
def test_frames_are_embedded_by_the_frozen_image_encoder_which_stays_out_of_checkpoints(tmp_path):
    root = save_tiny_clip(tmp_path / "clip", projection_dim=CLIP_DIM)
    torch.manual_seed(0)
    model = Wav2CLIP(widths=(8, 16, 16, 32), blocks=(1, 1, 1, 1), embed_dim=CLIP_DIM)
    module = Wav2CLIPTraining(model, image_encoder_root=str(root))
    batch = next(iter(DataLoader(FrameClips(8, seed=1), batch_size=8)))
    module.eval()
    with torch.no_grad():
        _, _, image = module.loss(batch)
    torch.testing.assert_close(image, load_clip_image_text(root).encode_images(batch["image"]))
    with pytest.raises(ValueError, match="image_encoder_root"):
        tiny_module().loss({"wave": batch["wave"], "image": batch["image"]})
    with pytest.raises(ValueError, match="embed_dim is 32"):
        Wav2CLIPTraining(
            Wav2CLIP(widths=(8, 8, 8, 8), blocks=(1, 1, 1, 1), embed_dim=32), image_encoder_root=str(root)
        )

    encoder_before = {k: v.clone() for k, v in module.image_encoder.state_dict().items()}
    trainer = Trainer(
        accelerator="cpu",
        max_steps=3,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        limit_val_batches=1,
    )
    trainer.fit(
        module,
        DataLoader(FrameClips(16, seed=2), batch_size=8),
        DataLoader(FrameClips(8, seed=3), batch_size=8),
    )
    assert module.image_encoder.state_dict().keys() == encoder_before.keys()
    assert all(torch.equal(v, encoder_before[k]) for k, v in module.image_encoder.state_dict().items())
    ckpt = next(tmp_path.rglob("*.ckpt"))
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    assert (
        not any(k.startswith("image_encoder.") for k in state) and "model.audio_encoder.conv1.weight" in state
    )
    resumed = Wav2CLIPTraining.load_from_checkpoint(
        ckpt, model=Wav2CLIP(widths=(8, 16, 16, 32), blocks=(1, 1, 1, 1), embed_dim=CLIP_DIM)
    )
    wave = batch["wave"][:2]
    with torch.no_grad():
        torch.testing.assert_close(resumed.model.eval()(wave), module.model.eval()(wave))
        torch.testing.assert_close(load_wav2clip(ckpt)(wave), module.model(wave))
