"""TiVA's stages through the real CLI on the small toy set: VAE export, T, S + G, joint, evaluation, generation,
TensorBoard examples, and a run folder that works away from the runs it came from."""

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from projects.tiva.frontend import AudioFrontEnd
from projects.tiva.models import encode_mel, load_vae
from projects.tiva.module_tiva import TiVA
from projects.tiva.pipeline import evaluate_run
from shared.cli import AvgenCLI
from shared.data import VGGSoundIndex
from shared.diffusion import DPMSolverOptions
from shared.metrics import OnsetSyncMetrics
from shared.pipeline import Stage, run_stage
from shared.video import video_info
from tests.conftest import REPO
from tests.projects.tiva.tiny import assert_close_to_scale, differ_at_scale

pytestmark = pytest.mark.slow  # every test here uses the toy stages, trained through the CLI

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
            errors.append(
                ((module.layout_predictor(batch["clip_cls"], batch["clip_patch"]) - target) ** 2).mean()
            )
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
    vae = module.pipeline.vae
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


def test_samples_generated_in_one_call_are_those_of_separate_calls(runs):
    module = runs["joint"].model.eval()
    pipeline = module.pipeline
    batch = next(iter(runs["joint"].datamodule.val_dataloader()))
    cls, patch, length = batch["clip_cls"][:2], batch["clip_patch"][:2], batch["wave"].shape[-1]
    with torch.no_grad():
        s, layout = pipeline.semantic(cls), pipeline.layout(cls, patch, "predicted")
    # the deterministic solver: a sample's noise is its x_T alone (the SDE form also draws noise at every step,
    # in an order that depends on the batch)
    settings = replace(module.sampling, steps=2, samples=3, dpm_solver=DPMSolverOptions())
    together = pipeline.sample(s, layout, length, settings, torch.Generator().manual_seed(11))
    generator = torch.Generator().manual_seed(11)
    one = replace(settings, samples=1)
    apart = torch.cat([pipeline.sample(s, layout, length, one, generator) for _ in range(3)])
    assert together.shape == (6, 4, 48, 16)
    # the same noise and conditions; only the batch size of the UNet's float arithmetic differs, which moves
    # the values (of magnitude ~100 here) by a few float32 ulps of the largest ones
    assert_close_to_scale(together, apart, rel=1e-4)
    assert differ_at_scale(together[2:4], together[:2], rel=0.1)  # fresh noise for each sample


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


def test_evaluation_logs_quality_sync_and_speed_on_the_first_eval_seconds(runs, toy_root, monkeypatch):
    scored = []
    update = OnsetSyncMetrics.update
    monkeypatch.setattr(
        OnsetSyncMetrics,
        "update",
        lambda self, gen, ref, ids=None: scored.append((gen, ref)) or update(self, gen, ref, ids),
    )
    run = runs["joint"].run_dir
    # two samples per clip: MKL refuses a real clip given twice and a sample without its clip's real one
    metrics = evaluate_run(run, run / "checkpoints" / "last.ckpt", runs["melception"].run_dir / "checkpoints" / "last.ckpt",
                           ["--model.init_args.sampling.steps=2", "--model.init_args.eval_seconds=1.0",
                            f"--run.root={run.parents[2]}"], samples=2)  # fmt: skip
    for name in ("fid", "mkl", "is", "w_dis", "dtw_dis", "layout_l2", "seconds_per_clip"):
        assert np.isfinite(metrics[name]), name
        # the bootstrap interval over the test clips holds the value (the 3-step Melception: IS, MKL constant)
        assert metrics[f"{name}_lo"] <= metrics[name] <= metrics[f"{name}_hi"], name
    assert metrics["seconds_per_clip"] > 0 and metrics["w_dis"] > 0
    # the first second of the 1.92-s clips, generated and real alike
    assert scored and all(gen.shape[-1] == ref.shape[-1] == 16000 for gen, ref in scored)
    clips = VGGSoundIndex(toy_root / "vggsound").records("test")
    assert sum(len(ref) for _, ref in scored) == 2 * len(clips)


def test_validation_writes_mels_layouts_and_sound_to_tensorboard(runs):
    events = EventAccumulator(str(runs["joint"].run_dir), size_guidance={"images": 0, "audio": 0})
    events.Reload()
    images, audio = events.Tags()["images"], events.Tags()["audio"]
    assert {"examples/mel_generated_real/0", "examples/layout_predicted_true/3"} <= set(images)
    assert {"audio/generated/0", "audio/real/3"} <= set(audio)
    assert events.Images("examples/mel_generated_real/0")[-1].step == 3  # the validation at step 3
    layout_events = EventAccumulator(str(runs["layout"].run_dir), size_guidance={"images": 0})
    layout_events.Reload()
    assert "examples/layout_predicted_true/0" in layout_events.Tags()["images"]  # T alone: layouts only
    assert not any(tag.startswith("examples/mel") for tag in layout_events.Tags()["images"])


def test_generate_gives_a_whole_real_video_its_sound(runs, demo_root, tmp_path):
    from projects.tiva.generate import main

    video = demo_root / "vas" / "videos" / "dog" / "video_02677.mp4"
    seconds = video_info(video).duration
    assert seconds > 3 * 1.92  # several windows of the toy model's clip, the last one partial
    written = main(["--video", str(video), "--out", str(tmp_path / "out.mp4"), "--run", str(runs["joint"].run_dir),
                    "--steps", "2", "--seed", "3", "--device", "cpu"])  # fmt: skip
    wav, png, mp4 = written
    wave, sr = sf.read(wav)
    assert sr == 16000 and len(wave) == round(seconds * 16000)
    last_window = wave[round(3 * 1.92 * 16000) :]
    assert np.abs(wave[: round(1.92 * 16000)]).max() > 0 and np.abs(last_window).max() > 0
    assert video_info(mp4).duration == pytest.approx(seconds, abs=1.5 / video_info(video).fps)
    width, height = Image.open(png).size
    assert width == 2 * math.ceil(len(wave) / 160) and height == 2 * (64 + 2 + 64)  # T's layout above the mel


def test_the_generate_door_gives_a_folder_of_videos_their_sound_as_the_project_command_does(
    runs, toy_root, tmp_path
):
    """`avgen generate --run` on the joint run `avgen fit` wrote: the project read from its config, every video's
    sound, a sidecar each, and the per-project command's sound for the same video and seed."""
    import json

    from projects.tiva.generate import main
    from shared.generation import open_run, project_of_run
    from shared.runs import run_checkpoint

    run = runs["joint"].run_dir
    assert project_of_run(run) == "tiva"
    videos = [record.path for record in VGGSoundIndex(toy_root / "vggsound").records("test")[:2]]
    items = open_run(run, "cpu", steps=2).generate(videos, tmp_path / "door", seed=3)
    assert [item.input for item in items] == videos
    for item in items:
        assert set(item.files) == {"audio", "spectrogram", "video"}
        wave, sr = sf.read(item.files["audio"])
        assert sr == 16000 and len(wave) == round(video_info(item.input).duration * 16000)
        content = json.loads(item.sidecar.read_text())
        assert content["checkpoint"] == str(run_checkpoint(run).resolve())  # the run's (best.ckpt here)
        assert content["settings"]["steps"] == 2 and content["direction"] == "video->audio"
    wav, _, _ = main(["--video", str(videos[1]), "--out", str(tmp_path / "one" / "x.mp4"), "--run", str(run),
                      "--steps", "2", "--seed", "3"])  # fmt: skip
    assert np.array_equal(sf.read(wav)[0], sf.read(items[1].files["audio"])[0])


def test_a_copied_run_folder_generates_and_tests_without_the_runs_it_came_from(runs, toy_root, tmp_path):
    """The joint run was initialised from the generator run and reads the toy VAE run's folder; a copy of it
    elsewhere, with the runs tree moved away, still generates and evaluates on its own."""
    from projects.tiva.generate import main

    joint = runs["joint"].run_dir
    copy = tmp_path / "elsewhere" / "joint_copy"
    shutil.copytree(joint, copy)
    tree = joint.parents[2]
    moved = tree.with_name(tree.name + "_moved")
    tree.rename(moved)
    try:
        video = VGGSoundIndex(toy_root / "vggsound").records("test")[0].path
        wav, _, _ = main(["--video", str(video), "--out", str(tmp_path / "out.mp4"), "--run", str(copy),
                          "--steps", "2"])  # fmt: skip
        assert np.abs(sf.read(wav)[0]).max() > 0
        cli = AvgenCLI(
            args=["test", "--config", str(copy / "config.yaml"), f"--ckpt_path={copy / 'checkpoints' / 'last.ckpt'}",
                  "--model.init_args.sampling.steps=2", f"--run.root={tmp_path / 'test_runs'}",
                  "--trainer.logger=false", "--trainer.enable_progress_bar=false"]
        )  # fmt: skip
        assert np.isfinite(float(cli.trainer.callback_metrics["test/dtw_dis"]))
        assert not tree.exists() or not any(tree.rglob("*.ckpt"))  # nothing was read from (or put back in) it
    finally:
        shutil.rmtree(tree, ignore_errors=True)
        moved.rename(tree)
