"""AudioToken's Embedder training (AudioTokenTraining) on a tiny random SD and a tiny BEATs, both saved to a temp
folder in their real layouts (diffusers folder; official {'cfg', 'model'} file) and loaded by the real code."""

import shutil

import pytest
import torch
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, Dataset

from projects.audiotoken.models.stable_diffusion import save_stable_diffusion, toy_stable_diffusion
from projects.audiotoken.module_audiotoken import AudioTokenTraining, label_penalty
from shared.cli import AvgenCLI
from shared.encoders.beats import BEATs, BEATsConfig, save_official
from tests.conftest import REPO, resolved_config

SECONDS = 1.0  # BEATs takes any length; 1 s (48 tokens) keeps the tests fast


@pytest.fixture(scope="module")
def sd_root(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sd") / "stable_diffusion"
    return str(save_stable_diffusion(toy_stable_diffusion(seed=1, scaling_factor=0.37), folder))


@pytest.fixture(scope="module")
def beats_ckpt(tmp_path_factory):
    torch.manual_seed(2)
    cfg = BEATsConfig(
        input_patch_size=16, embed_dim=32, encoder_layers=12, encoder_embed_dim=32, encoder_ffn_embed_dim=64,
        encoder_attention_heads=2, deep_norm=True, conv_pos=16, conv_pos_groups=4,
        relative_position_embedding=True, num_buckets=32, max_distance=64, gru_rel_pos=True,
    )  # fmt: skip
    path = tmp_path_factory.mktemp("beats") / "beats.pt"
    save_official(BEATs(cfg), path)
    return str(path)


def make_batch(size: int = 4, seed: int = 0, height: int = 40, width: int = 64) -> dict:
    generator = torch.Generator().manual_seed(seed)
    labels = ["dog barking", "playing acoustic guitar", "rain", "dog barking"][:size]
    return {
        "wave": torch.randn(size, int(16000 * SECONDS), generator=generator) * 0.1,
        "image": torch.rand(size, 3, height, width, generator=generator) * 2 - 1,
        "label": torch.arange(size),
        "label_text": labels,
        "caption": [f"a photo of a {label}" for label in labels],
        "clip_id": [f"clip{seed}_{i}" for i in range(size)],
        "window_start": torch.arange(size) % 5,
        "frame_index": torch.arange(size) * 3,
    }


class FixedBatches(Dataset):
    """The same batch `length` times (a DataLoader with batch_size=None yields it as is)."""

    def __init__(self, batch: dict, length: int = 100):
        self.batch, self.length = batch, length

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        return self.batch


def loader(batch: dict) -> DataLoader:
    return DataLoader(FixedBatches(batch), batch_size=None)


def trainer(tmp_path, max_steps: int, **kwargs) -> Trainer:
    return Trainer(
        accelerator="cpu", max_steps=max_steps, logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=0, **kwargs,
    )  # fmt: skip


def test_only_the_embedder_is_trained_and_checkpointed(sd_root, beats_ckpt, tmp_path):
    module = AudioTokenTraining(sd_root, beats_ckpt)
    assert {id(p) for p in module.parameters()} == {id(p) for p in module.embedder.parameters()}
    frozen = module.frozen
    frozen_before = {
        name: {k: v.clone() for k, v in part.state_dict().items()}
        for name, part in [("text_encoder", frozen.sd.text_encoder), ("unet", frozen.sd.unet),
                           ("vae", frozen.sd.vae), ("beats", frozen.beats)]
    }  # fmt: skip
    embedder_before = {k: v.clone() for k, v in module.embedder.state_dict().items()}
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer(tmp_path, 1, callbacks=[checkpoint]).fit(module, loader(make_batch()))

    state = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["state_dict"]
    assert state.keys() == {f"embedder.{k}" for k in embedder_before}
    changed = [k for k, v in module.embedder.state_dict().items() if not torch.equal(v, embedder_before[k])]
    assert changed, "the optimiser step did not change the Embedder"
    for name, before in frozen_before.items():
        part = {"text_encoder": frozen.sd.text_encoder, "unet": frozen.sd.unet, "vae": frozen.sd.vae,
                "beats": frozen.beats}[name]  # fmt: skip
        assert all(torch.equal(v, before[k]) for k, v in part.state_dict().items()), f"{name} changed"
        assert not part.training, f"{name} left eval mode"


def test_loss_pieces(sd_root, beats_ckpt):
    module = AudioTokenTraining(sd_root, beats_ckpt, l1_weight=0.01, l2_weight=0.003)
    batch = make_batch()
    torch.manual_seed(5)
    losses = module.losses(batch)
    torch.manual_seed(5)
    tokens = module.tokens(batch)
    assert losses["l1"].item() == pytest.approx(0.01 * tokens.abs().mean().item(), rel=1e-5)
    assert losses["l2"].item() == pytest.approx(0.003 * (tokens**2).sum(-1).mean().item(), rel=1e-5)
    assert "label" not in losses  # label_weight 0 by default, as the official code
    total = losses["ldm"] + losses["l1"] + losses["l2"]
    assert losses["loss"].item() == pytest.approx(total.item(), rel=1e-6)


def test_latents_are_scaled_by_the_vae_config(sd_root, beats_ckpt):
    """The loss recomputed by hand with the VAE config's scaling factor (0.37 here, not SD's 0.18215) matches."""
    module = AudioTokenTraining(sd_root, beats_ckpt)
    sd = module.frozen.sd
    assert sd.scaling_factor == pytest.approx(0.37)
    batch = make_batch()
    with torch.no_grad():
        tokens = module.tokens(batch)
        loss = module.noise_loss(batch, tokens, torch.Generator().manual_seed(0))

        def by_hand(scale: float) -> float:
            generator = torch.Generator().manual_seed(0)
            moments = sd.vae.encode(batch["image"]).latent_dist.parameters
            latents = DiagonalGaussianDistribution(moments).sample(generator) * scale
            noise = torch.randn(latents.shape, generator=generator)
            t = torch.randint(0, 1000, (len(latents),), generator=generator)
            ids = module.prompt_ids.expand(len(latents), -1)
            context = module.frozen.injector.encode(ids, tokens)
            prediction = sd.unet(sd.noise_scheduler.add_noise(latents, noise, t), t, context).sample
            return torch.nn.functional.mse_loss(prediction, noise).item()

    assert loss.item() == pytest.approx(by_hand(0.37), rel=1e-5)
    assert abs(by_hand(0.18215) - loss.item()) > 1e-4 * loss.item(), "the scale makes no difference here"


def test_label_penalty_is_zero_for_a_parallel_token_and_squared_by_default():
    labels = torch.randn(3, 8)
    assert label_penalty(2.5 * labels, labels, "squared").item() == pytest.approx(0.0, abs=1e-6)
    assert label_penalty(2.5 * labels, labels, "linear").item() == pytest.approx(0.0, abs=1e-6)
    opposite = -labels  # cosine -1: distance 2
    assert label_penalty(opposite, labels, "linear").item() == pytest.approx(2.0, rel=1e-6)
    assert label_penalty(opposite, labels, "squared").item() == pytest.approx(4.0, rel=1e-6)


@pytest.mark.parametrize("source", ["text_encoder", "input_embeddings"])
def test_label_loss_works_in_both_variants(sd_root, beats_ckpt, source):
    module = AudioTokenTraining(sd_root, beats_ckpt, label_weight=0.5, label_source=source)
    batch = make_batch()
    sd = module.frozen.sd
    tokenizer, text_encoder = sd.tokenizer, sd.text_encoder
    label = "playing acoustic guitar"
    ids = tokenizer(label).input_ids
    n_label = len(ids) - 2
    assert n_label == 3  # BOS, playing, acoustic, guitar, EOS
    with torch.no_grad():
        if source == "input_embeddings":
            expected = text_encoder.get_input_embeddings().weight[ids[1:-1]].mean(0)
        else:
            padded = tokenizer(label, padding="max_length", max_length=77, return_tensors="pt").input_ids
            expected = text_encoder(padded).last_hidden_state[0, 1 : 1 + n_label].mean(0)
    vectors = module.label_vectors(batch["label_text"])
    torch.testing.assert_close(vectors[1], expected)
    torch.testing.assert_close(vectors[0], vectors[3])  # the same label, the same vector
    assert not torch.allclose(vectors[0], vectors[2])

    losses = module.losses(batch)
    assert 0 < losses["label"].item() <= 0.5 * 4  # 0.5 x (1 - cos)², cos in [-1, 1]
    losses["label"].backward()
    grads = [p.grad for p in module.embedder.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads), "no gradient from the label loss reaches the Embedder"


def test_a_cached_epoch_equals_a_fresh_one_and_a_changed_parameter_does_not_reuse(
    sd_root, beats_ckpt, tmp_path
):
    cache_dir = tmp_path / "cache"
    cached = AudioTokenTraining(sd_root, beats_ckpt, cache_dir=str(cache_dir)).eval()
    fresh = AudioTokenTraining(sd_root, beats_ckpt).eval()
    fresh.embedder.load_state_dict(cached.embedder.state_dict())
    batch = make_batch()

    def loss(module) -> float:
        torch.manual_seed(7)
        with torch.no_grad():
            return module.losses(batch)["loss"].item()

    first = loss(cached)  # computes and stores
    folders = sorted(p.name for p in cache_dir.iterdir())
    assert [f.split("-")[0] for f in folders] == ["audiotoken_beats", "audiotoken_latents"]
    assert all(len(list((cache_dir / f).glob("*.npy"))) == 4 for f in folders)
    calls = []
    cached.frozen.sd.vae.encode = lambda *a, **k: calls.append("vae")
    cached.frozen.beats.forward = lambda *a, **k: calls.append("beats")
    second = loss(cached)  # all from the cache
    assert calls == []
    assert second == first == pytest.approx(loss(fresh), rel=1e-6)

    # another image size, another SD folder: new caches, not the old ones
    other_root = tmp_path / "sd_copy"
    shutil.copytree(sd_root, other_root)
    with torch.no_grad():
        AudioTokenTraining(sd_root, beats_ckpt, cache_dir=str(cache_dir)).losses(make_batch(height=32))
        AudioTokenTraining(str(other_root), beats_ckpt, cache_dir=str(cache_dir)).losses(batch)
    latents = sorted(cache_dir.glob("audiotoken_latents-*"))
    assert len(latents) == 3, "a changed image size or SD folder reused a cache"
    assert len(list(cache_dir.glob("audiotoken_beats-*"))) == 1  # BEATs and the window did not change


@pytest.mark.slow
def test_a_few_steps_reduce_the_loss_on_a_fixed_batch(sd_root, beats_ckpt, tmp_path):
    """The noise loss at fixed latent samples, noise and timesteps (what validation logs) drops after 20 steps.
    The random UNet's cross-attention is weak, so the token can move the loss by only about a percent."""
    torch.manual_seed(0)
    module = AudioTokenTraining(sd_root, beats_ckpt, lr=3e-3, cache_dir=str(tmp_path / "cache"))
    batch = make_batch()

    def fixed_loss() -> float:
        with torch.no_grad():
            return module.noise_loss(batch, module.tokens(batch), torch.Generator().manual_seed(3)).item()

    module.eval()
    before = fixed_loss()
    trainer(tmp_path, 20).fit(module, loader(batch))
    module.eval()
    after = fixed_loss()
    assert after < 0.995 * before, (before, after)


class FirstStep(Callback):
    def __init__(self):
        self.first_step = None
        self.weights_at_start = None

    def on_train_start(self, trainer, module):
        self.weights_at_start = {k: v.clone() for k, v in module.embedder.state_dict().items()}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if self.first_step is None:
            self.first_step = trainer.global_step + 1


def test_resume_continues_from_the_checkpoint_with_the_configured_lr(sd_root, beats_ckpt, tmp_path):
    batch = make_batch()
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, every_n_train_steps=1)
    first = AudioTokenTraining(sd_root, beats_ckpt, lr=2.5e-4)
    trainer(tmp_path, 2, callbacks=[checkpoint]).fit(first, loader(batch))
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)

    resumed = AudioTokenTraining(sd_root, beats_ckpt, lr=2.5e-4)
    probe = FirstStep()
    run = trainer(tmp_path, 4, callbacks=[probe])
    run.fit(resumed, loader(batch), ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert probe.first_step == 3, "it did not resume after step 2"
    for key, value in probe.weights_at_start.items():
        torch.testing.assert_close(value, saved["state_dict"][f"embedder.{key}"], rtol=0, atol=0)
    (group,) = run.optimizers[0].param_groups
    assert group["lr"] == 2.5e-4  # absolute, constant
    assert (group["betas"], group["weight_decay"], group["eps"]) == ((0.9, 0.999), 1e-2, 1e-8)
    assert run.optimizers[0].state[group["params"][0]]["step"].item() == 4


CONFIGS = REPO / "projects" / "audiotoken" / "configs"


def test_the_paper_config_has_the_paper_s_settings():
    resolved = resolved_config(CONFIGS / "vggsound_audiotoken.yaml")
    model, data, run = resolved["model"]["init_args"], resolved["data"]["init_args"], resolved["trainer"]
    assert resolved["model"]["class_path"] == "projects.audiotoken.module_audiotoken.AudioTokenTraining"
    assert (model["lr"], data["batch_size"], run["max_steps"]) == (8e-5, 8, 60000)
    assert model["lr"] == pytest.approx(
        1e-5 * 1 * 8 * 1
    )  # the official scaling rule at accum 1, batch 8, 1 GPU
    assert (model["l1_weight"], model["l2_weight"], model["label_weight"]) == (0.01, 0.0, 0.0)
    assert (tuple(model["betas"]), model["weight_decay"], model["eps"]) == ((0.9, 0.999), 1e-2, 1e-8)
    assert model["prompt"] == "a photo of <*>" and not model["official_dropout"]
    assert (tuple(data["image_size"]), data["train_window_seconds"]) == ((512, 320), 5)
    (checkpoint,) = [c for c in run["callbacks"] if c["class_path"].endswith("ModelCheckpoint")]
    assert checkpoint["init_args"]["every_n_train_steps"] == 1000


def test_the_toy_config_builds_on_a_tiny_sd_and_beats(sd_root, beats_ckpt, tmp_path):
    cli = AvgenCLI(
        args=[
            "--config", str(CONFIGS / "toy_audiotoken.yaml"), f"--model.init_args.sd_root={sd_root}",
            f"--model.init_args.beats_ckpt={beats_ckpt}", f"--run.root={tmp_path}",
        ],
        run=False,
    )  # fmt: skip
    assert isinstance(cli.model, AudioTokenTraining)
    assert cli.datamodule.batch_size == 8 and cli.trainer.max_steps == 300
    assert (cli.model.embedder.fc1.in_features, cli.model.embedder.fc2.out_features) == (3 * 32, 64)


def test_validation_is_deterministic_and_logs_token_statistics(sd_root, beats_ckpt, tmp_path):
    module = AudioTokenTraining(sd_root, beats_ckpt)
    batches = DataLoader(FixedBatches(make_batch(), length=2), batch_size=None)
    run = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path)
    first, second = run.validate(module, batches, verbose=False), run.validate(module, batches, verbose=False)
    assert first == second
    (metrics,) = first
    assert {"val/loss", "val/token_norm", "val/token_label_cos", "val/token_pairwise_cos"} <= metrics.keys()
    with torch.no_grad():
        tokens = module.eval().tokens(make_batch())
    assert metrics["val/token_norm"] == pytest.approx(tokens.norm(dim=-1).mean().item(), rel=1e-5)
