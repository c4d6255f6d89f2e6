"""Training WavBriVL's audio tower against a frozen image tower: MoCo and InfoNCE, the frame-embedding cache,
checkpoints without the image tower, exact resume, loading the trained tower."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from projects.wavbrivl.data import WavBriVLVGGSoundDataModule
from projects.wavbrivl.models.audio_tower import WavLMAudioTower, load_audio_tower
from projects.wavbrivl.module_audio_tower import WavBriVLTraining
from shared.callbacks.rng import RNGStateCheckpoint
from shared.data import VGGSoundIndex
from tests.projects.wavbrivl.test_audio_tower import TINY

pytestmark = pytest.mark.usefixtures("one_thread")

EMBED = 16


class StandInImageTower(nn.Module):
    """A fixed random image tower: images [B, 3, H, W] in [0, 1] -> [B, 16] unit norm (counts its calls)."""

    embed_dim = EMBED

    def __init__(self):
        super().__init__()
        torch.manual_seed(123)
        self.linear = nn.Linear(3 * 8 * 8, EMBED)
        self.calls = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += len(images)
        return F.normalize(self.linear(F.adaptive_avg_pool2d(images, 8).flatten(1)), dim=-1)


@pytest.fixture(scope="module")
def data_cache(tmp_path_factory):
    """One feature cache for the module's tests: the toy clips are decoded once."""
    return tmp_path_factory.mktemp("wavbrivl_cache")


def datamodule(toy_root, cache_dir, batch_size=4) -> WavBriVLVGGSoundDataModule:
    index = VGGSoundIndex(toy_root / "vggsound", split_dir=None, valid_fraction=0.1)
    return WavBriVLVGGSoundDataModule(
        index, cache_dir=str(cache_dir), audio_seconds=2.0, image_size=32, frame_fps=5.0,
        batch_size=batch_size,
    )  # fmt: skip


def module(loss="moco", cache=None, queue_size=8, image_tower=None) -> WavBriVLTraining:
    image_tower = image_tower or StandInImageTower()
    pl.seed_everything(0, verbose=False)  # torch, numpy (WavLM's time masking) and python, as the CLI seeds
    tower = WavLMAudioTower(TINY, embed_dim=EMBED, trainable="all")
    return WavBriVLTraining(
        tower, image_tower, loss=loss, queue_size=queue_size, lr=1e-3, frame_cache_dir=cache
    )


def trainer(tmp_path, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path, num_sanity_val_steps=0, callbacks=[RNGStateCheckpoint()], **kwargs,
    )  # fmt: skip


def test_checkpoint_holds_the_audio_side_only_and_loads(toy_root, data_cache, tmp_path):
    model = module()
    assert not any(name.startswith("_image_tower") for name in model.state_dict())
    assert {"loss_fn.queue_a", "loss_fn.queue_b", "loss_fn.queue_ptr"} <= set(model.state_dict())
    assert not any("image_tower" in name for name, _ in model.named_modules())
    run = trainer(tmp_path, max_steps=2, limit_val_batches=1)
    run.fit(model, datamodule=datamodule(toy_root, data_cache))
    path = tmp_path / "model.ckpt"
    run.save_checkpoint(path)
    loaded = load_audio_tower(path)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    wave = 0.1 * torch.randn(2, 16_000)
    lengths = torch.tensor([16_000, 9_000])
    with torch.no_grad():
        assert torch.allclose(loaded(wave, lengths), model.audio_tower.eval()(wave, lengths), atol=1e-6)


def test_moco_step_fills_the_queue_and_moves_the_momentum_copy(toy_root, data_cache, tmp_path):
    model = module()
    before = [p.clone() for p in model.audio_momentum.parameters()]
    run = trainer(tmp_path, max_steps=1, limit_val_batches=1)
    run.fit(model, datamodule=datamodule(toy_root, data_cache))
    assert int(model.loss_fn.queue_ptr) == 4  # one global batch of 4 keys entered the queue of 8
    moved = [not torch.equal(b, p) for b, p in zip(before, model.audio_momentum.parameters(), strict=True)]
    assert any(moved)
    assert not model.audio_momentum.training


def test_queue_must_be_a_multiple_of_the_global_batch(toy_root, data_cache, tmp_path):
    model = module(queue_size=10)
    with pytest.raises(ValueError, match="multiple of the global batch 4"):
        trainer(tmp_path, max_steps=1, limit_val_batches=1).fit(
            model, datamodule=datamodule(toy_root, data_cache)
        )


def test_frame_embeddings_are_cached_per_clip_and_frame(toy_root, data_cache, tmp_path):
    model = module(cache=str(tmp_path / "frames"))
    data = datamodule(toy_root, data_cache)
    run = trainer(tmp_path, max_epochs=1, limit_train_batches=0, limit_val_batches=1.0)
    run.validate(model, datamodule=data)
    tower = model._image_tower[0]
    first = tower.calls
    assert first == len(data.split("valid"))
    run.validate(model, datamodule=data)  # the same middle frames: every embedding from the cache
    assert tower.calls == first
    batch = next(iter(data.val_dataloader()))
    cached = model.frame_embeddings(batch)
    assert torch.allclose(cached, tower(batch["image"]), atol=1e-6)
    files = list(model.frame_cache().dir.glob("*@*.npy"))
    assert len(files) == first
    changed = StandInImageTower()
    with torch.no_grad():
        changed.linear.weight.mul_(2)  # another tower: another cache
    other = module(cache=str(tmp_path / "frames"), image_tower=changed)
    other._trainer = run
    assert other.frame_cache().dir != model.frame_cache().dir


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["infonce", "moco"])
def test_a_few_steps_decrease_the_loss(toy_root, data_cache, tmp_path, loss):
    model = module(loss=loss)
    data = datamodule(toy_root, data_cache, batch_size=8)
    data.prepare_data()
    batch = next(iter(data.val_dataloader()))

    def fixed_loss() -> float:  # the same batch and, for MoCo, the same queue
        state = {k: v.clone() for k, v in model.loss_fn.state_dict().items()}
        model.eval()
        with torch.no_grad():
            value = model.losses(batch, enqueue=False)[0]
        model.loss_fn.load_state_dict(state)
        return (value["audio2image"] if loss == "moco" else value["loss"]).item()

    queue = {k: v.clone() for k, v in model.loss_fn.state_dict().items()}
    before = fixed_loss()
    trainer(tmp_path, max_steps=20, limit_val_batches=1).fit(model, datamodule=data)
    if loss == "moco":
        model.loss_fn.load_state_dict(queue)  # the negatives of the first measurement
    after = fixed_loss()
    assert after < before - 0.1, (before, after)


@pytest.mark.slow
def test_resume_continues_exactly(toy_root, data_cache, tmp_path):
    """Two epochs straight, and one epoch, a checkpoint, a fresh process state and the second epoch from it:
    the same weights, queue and momentum copy (the frame draws, the queue and the optimiser all resumed)."""
    data_args = (toy_root, data_cache)
    straight = module()
    trainer(tmp_path / "a", max_epochs=2, limit_val_batches=1).fit(
        straight, datamodule=datamodule(*data_args)
    )
    first = module()
    run = trainer(tmp_path / "b", max_epochs=1, limit_val_batches=1)
    run.fit(first, datamodule=datamodule(*data_args))
    run.save_checkpoint(tmp_path / "epoch1.ckpt")
    resumed = module()
    pl.seed_everything(999, verbose=False)  # a resumed process starts from other random state
    resumed_run = trainer(tmp_path / "c", max_epochs=2, limit_val_batches=1)
    resumed_run.fit(resumed, datamodule=datamodule(*data_args), ckpt_path=tmp_path / "epoch1.ckpt")
    assert resumed_run.global_step == 2 * run.global_step > 0
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name
    assert not torch.allclose(first.audio_tower.projection.weight, resumed.audio_tower.projection.weight)
