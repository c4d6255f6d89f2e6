"""TiVA's stages through the real CLI on the small toy set: VAE export, T, S + G, joint, evaluation, generation."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from projects.tiva.frontend import AudioFrontEnd
from projects.tiva.models import encode_mel, load_vae
from projects.tiva.module_tiva import TiVA
from projects.tiva.pipeline import evaluate_run
from shared.cli import AvgenCLI
from shared.data import VGGSoundIndex
from shared.pipeline import Stage, run_stage
from shared.video import video_info
from tests.conftest import REPO

CONFIGS = REPO / "projects" / "tiva" / "configs"


def fit(config: str, toy_root: Path, tmp: Path, *extra: str) -> AvgenCLI:
    return AvgenCLI(
        args=[
            "fit", "--config", str(CONFIGS / config),
            f"--data.init_args.dataset.init_args.root={toy_root / 'vggsound'}",
            f"--data.init_args.cache_dir={tmp / 'cache'}", f"--run.root={tmp / 'runs'}",
            "--trainer.enable_progress_bar=false", *extra,
        ]
    )  # fmt: skip


@pytest.fixture(scope="module")
def runs(toy_root, tmp_path_factory) -> dict[str, AvgenCLI]:
    """Every toy stage for a few steps (T for 60, so that it learns something measurable)."""
    tmp = tmp_path_factory.mktemp("tiva")
    out = {
        "vae": fit("toy_vae.yaml", toy_root, tmp, "--trainer.max_steps=4", "--trainer.val_check_interval=2")
    }
    root = f"--model.init_args.audioldm_root={out['vae'].run_dir / 'audioldm'}"
    short = ("--trainer.max_steps=3", "--trainer.val_check_interval=3")
    out["layout"] = fit(
        "toy_layout.yaml", toy_root, tmp, root, "--trainer.max_steps=60", "--trainer.val_check_interval=30"
    )
    layout_ckpt = out["layout"].run_dir / "checkpoints" / "last.ckpt"
    out["generator"] = fit(
        "toy_generator.yaml",
        toy_root,
        tmp,
        root,
        f"--model.init_args.layout_predictor_ckpt={layout_ckpt}",
        *short,
    )
    generator_ckpt = out["generator"].run_dir / "checkpoints" / "last.ckpt"
    out["joint"] = fit(
        "toy_joint.yaml", toy_root, tmp, root, f"--model.init_args.init_ckpt={generator_ckpt}", *short
    )
    out["melception"] = fit(
        "toy_melception.yaml", toy_root, tmp, "--trainer.max_steps=3", "--trainer.max_epochs=1"
    )
    return out


def test_the_vae_stage_writes_an_audioldm_folder_with_its_latent_scale(runs):
    vae = load_vae(runs["vae"].run_dir / "audioldm")
    scale = vae.config.scaling_factor
    assert scale != 0.18215  # diffusers' default: not set by scale_by_std
    batch = next(iter(runs["vae"].datamodule.train_dataloader()))
    with torch.no_grad():
        z = encode_mel(vae, AudioFrontEnd()(batch["wave"]))
    assert z.shape[1:] == (4, 48, 16)  # [B, 1, 192, 64] -> x4 down in time and frequency
    assert 0.5 < z.std().item() < 2.0  # scaled to about unit variance


def test_the_layout_stage_learns_the_toy_layouts(runs):
    cli = runs["layout"]
    module, data = cli.model.eval(), cli.datamodule
    errors, baseline = [], []
    with torch.no_grad():
        for batch in data.val_dataloader():
            target = module.front_end.layout(module.front_end(batch["wave"]))
            errors.append(((module.predicted_layout(batch) - target) ** 2).mean())
            baseline.append((target**2).mean())
    # far below predicting a silent (all-zero) layout after 60 steps
    assert torch.stack(errors).mean() < 0.5 * torch.stack(baseline).mean()


def test_t_stays_frozen_in_the_generator_stage_and_joint_starts_from_the_generator(runs):
    def weights(run, name):
        state = torch.load(run.run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)[
            "state_dict"
        ]
        return {k: v for k, v in state.items() if k.startswith(name)}

    layout, generator = (
        weights(runs["layout"], "layout_predictor."),
        weights(runs["generator"], "layout_predictor."),
    )
    assert layout.keys() == generator.keys() and all(torch.equal(layout[k], generator[k]) for k in layout)
    config = runs["joint"].run_dir / "config.yaml"
    assert config.is_file()
    fresh = TiVA.load_from_checkpoint(
        runs["generator"].run_dir / "checkpoints" / "last.ckpt", map_location="cpu"
    )
    joint = runs["joint"].model
    assert not torch.equal(  # the joint stage trained G further from the generator stage's weights
        next(iter(fresh.generator.parameters())), next(iter(joint.generator.parameters()))
    )
    assert all(p.requires_grad for p in joint.layout_predictor.parameters())


def test_cached_audio_targets_are_the_fresh_ones_and_skip_the_vae(runs, monkeypatch):
    module = runs["generator"].model.eval()
    assert module.hparams.cache_audio_targets  # the toy configs cache
    batch = next(iter(runs["generator"].datamodule.val_dataloader()))
    vae = module.part("vae")
    encodes = []
    real_encode = vae.encode
    monkeypatch.setattr(vae, "encode", lambda x: encodes.append(len(x)) or real_encode(x))
    module._audio_targets.clear()
    with torch.no_grad():
        first = module.audio_targets(batch)
        again = module.audio_targets(batch)
        cached_losses = module.losses(batch, generator=torch.Generator().manual_seed(5))
        monkeypatch.setitem(module.hparams, "cache_audio_targets", False)
        module._audio_targets.clear()
        fresh_losses = module.losses(batch, generator=torch.Generator().manual_seed(5))
    assert encodes == [len(batch["wave"]), len(batch["wave"])]  # the second call and the cached loss: none
    assert first.keys() == again.keys() == {"layout", "posterior"}
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert first["posterior"].shape == (len(batch["wave"]), 8, 48, 16)  # mean and log-variance of 4 channels
    assert all(torch.equal(cached_losses[k], fresh_losses[k]) for k in ("loss", "layout_l2"))


def test_samples_generated_in_one_call_are_those_of_separate_calls(runs, monkeypatch):
    module = runs["joint"].model.eval()
    monkeypatch.setitem(module.hparams, "steps", 2)
    batch = next(iter(runs["joint"].datamodule.val_dataloader()))
    batch = {k: v[:2] for k, v in batch.items()}
    length = batch["wave"].shape[-1]
    generator = torch.Generator().manual_seed(11)
    together = module.generate_latents(batch, length, generator, samples=3)
    generator = torch.Generator().manual_seed(11)
    apart = torch.cat([module.generate_latents(batch, length, generator) for _ in range(3)])
    assert together.shape == (6, 4, 48, 16)
    # the same noise and conditions; only the batch size of the UNet's float arithmetic differs
    assert torch.allclose(together, apart, atol=1e-4), (together - apart).abs().max()
    assert not torch.allclose(together[:2], together[2:4], atol=1e-2)  # fresh noise for each sample


def test_a_pipeline_stage_without_validation_still_returns_its_checkpoint_weights(runs, toy_root, tmp_path):
    root = f"--model.init_args.audioldm_root={runs['vae'].run_dir / 'audioldm'}"
    extra = [f"--data.init_args.dataset.init_args.root={toy_root / 'vggsound'}",
             f"--data.init_args.cache_dir={tmp_path / 'cache'}", f"--run.root={tmp_path / 'runs'}",
             "--trainer.enable_progress_bar=false", "--trainer.max_steps=2", "--trainer.val_check_interval=1"]  # fmt: skip
    unvalidated = run_stage(
        "tiva", Stage("layout", "toy_layout.yaml", lambda r: [root], validate=False), {}, extra
    )
    assert unvalidated.metrics == {}
    machine = json.loads((unvalidated.run_dir / "machine.json").read_text())  # what machine made the run
    assert machine["threads"] == torch.get_num_threads() and machine["cpu_capability"]
    saved = torch.load(unvalidated.checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    model = unvalidated.model.state_dict()
    assert saved.keys() == model.keys() and all(torch.equal(saved[k], model[k]) for k in saved)
    # the same finished run again, validated this time
    validated = run_stage("tiva", Stage("layout", "toy_layout.yaml", lambda r: [root]), {}, extra)
    assert validated.checkpoint == unvalidated.checkpoint
    assert np.isfinite(validated.metrics["val/layout_l2"])


def test_evaluation_logs_quality_sync_and_speed(runs):
    run = runs["joint"].run_dir
    # two samples per clip: MKL refuses a real clip given twice and a sample without its clip's real one
    metrics = evaluate_run(run, run / "checkpoints" / "last.ckpt", runs["melception"].run_dir / "checkpoints" / "last.ckpt",
                           ["--model.init_args.steps=2", f"--run.root={run.parents[2]}"], samples=2)  # fmt: skip
    for name in ("fid", "mkl", "is", "w_dis", "dtw_dis", "layout_l2", "seconds_per_clip"):
        assert np.isfinite(metrics[name]), name
        # the bootstrap interval over the test clips holds the value (the 3-step Melception: IS, MKL constant)
        assert metrics[f"{name}_lo"] <= metrics[name] <= metrics[f"{name}_hi"], name
    assert metrics["seconds_per_clip"] > 0 and metrics["w_dis"] > 0


def test_generate_writes_the_sound_the_picture_and_the_muxed_video(runs, toy_root, tmp_path):
    from projects.tiva.generate import main

    video = VGGSoundIndex(toy_root / "vggsound").records("test")[0].path
    written = main(["--video", str(video), "--out", str(tmp_path / "out.mp4"), "--run", str(runs["joint"].run_dir),
                    "--steps", "2", "--seed", "3"])  # fmt: skip
    wav, png, mp4 = written
    wave, sr = sf.read(wav)
    assert sr == 16000 and len(wave) == 30720  # 1.92 s, the model's clip length
    assert np.abs(wave).max() > 0
    assert png.stat().st_size > 0
    assert video_info(mp4).duration == pytest.approx(1.92, abs=0.05)
