"""TiVA's LightningModule on tiny parts, without a trainer: the wiring of each stage (paper sec. 3.3, eqs. 8-10),
generation with the ground-truth layout, the frozen parts a checkpoint carries, and the validation examples."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from projects.tiva.models import FROZEN_PARTS_KEY, SamplingSettings, layout_to_latent
from shared.audio import GriffinLimVocoder
from shared.callbacks import ExampleLogger
from tests.projects.tiva.tiny import LAYOUT, WAVE, save_tiny_audioldm, tiny_batch, tiny_tiva


@pytest.fixture(scope="module")
def audioldm(tmp_path_factory):
    root = tmp_path_factory.mktemp("audioldm")
    save_tiny_audioldm(root)
    return root


def record_calls(module: torch.nn.Module) -> list:
    """The outputs of every forward call of `module`, kept as they were."""
    outputs = []
    module.register_forward_hook(lambda m, args, out: outputs.append(out))
    return outputs


def record_g_layouts(module) -> list:
    """The layout channel G gets at each call (its second positional input, [B, 1, h, w])."""
    layouts = []
    module.generator.register_forward_pre_hook(lambda m, args: layouts.append(args[1].detach().clone()))
    return layouts


@pytest.mark.parametrize("stage", ["generator", "joint", "no_layout"])
def test_g_gets_the_layout_of_its_stage_and_t_runs_once_a_step(audioldm, stage):
    # dropout 0.5 in T: two runs of T in one step would give two different layouts
    module = tiny_tiva(audioldm, stage, predictor={"dropout": 0.5}).train()
    t_outputs, g_layouts = record_calls(module.layout_predictor), record_g_layouts(module)
    batch = tiny_batch()
    losses = module.losses(batch, generator=torch.Generator().manual_seed(0))
    true = module.true_layout(batch["wave"])
    (g_layout,) = g_layouts
    expected = {
        "generator": true,  # eq. 9
        "joint": t_outputs[0] if t_outputs else None,  # eq. 10
        "no_layout": torch.zeros_like(true),  # Table 5's w/o T
    }[stage]
    assert len(t_outputs) == (0 if stage == "no_layout" else 1)
    assert torch.equal(g_layout, layout_to_latent(expected, g_layout.shape[-2:]).detach())
    if stage != "no_layout":  # the logged L2 is that of the layout G saw (joint) or T's own (generator)
        assert torch.equal(losses["layout_l2"], F.mse_loss(t_outputs[0], true))
    assert stage != "joint" or not torch.allclose(t_outputs[0], true)  # T's layout is not the true one


@pytest.mark.parametrize(("stage", "t_learns"), [("joint", True), ("generator", False)])
def test_t_learns_from_g_s_loss_in_the_joint_stage_only(audioldm, stage, t_learns):
    module = tiny_tiva(audioldm, stage).train()
    losses = module.losses(tiny_batch(), generator=torch.Generator().manual_seed(0))
    losses["loss"].backward()  # G's noise loss alone: the joint loss has no layout term (eq. 10)
    t_grads = [p.grad for p in module.layout_predictor.parameters()]
    if t_learns:
        assert all(g is not None for g in t_grads) and sum(g.abs().sum() for g in t_grads) > 0
    else:
        assert all(g is None for g in t_grads)
    for part in (module.semantic, module.generator):
        assert sum(p.grad.abs().sum() for p in part.parameters() if p.grad is not None) > 0


def test_ground_truth_generation_takes_the_front_end_s_layout_and_never_the_vae_encoder(
    audioldm, monkeypatch
):
    sampling = SamplingSettings(steps=2, layout="ground_truth", samples=2)
    module = tiny_tiva(audioldm, "generator", sampling=sampling).eval()
    batch = tiny_batch()
    g_layouts = record_g_layouts(module)
    # the clock runs from the features to the mel: a VAE encode of the reference must not be inside it
    monkeypatch.setattr(
        module.pipeline.vae, "encode", lambda *a, **k: pytest.fail("VAE encode in generation")
    )
    out = module.generate(batch, torch.Generator().manual_seed(0))
    true = module.true_layout(batch["wave"])
    assert torch.equal(out["layout"], true)
    latent_layout = layout_to_latent(true, g_layouts[0].shape[-2:])
    # CFG batches both branches: the layout is the same in each, for both samples of each clip
    assert all(torch.equal(g, latent_layout.repeat(len(g) // len(true), 1, 1, 1)) for g in g_layouts)
    assert out["wave"].shape == (4, WAVE) and out["logmel"].shape == (4, 64, WAVE // 160)
    assert out["seconds"] > 0


def test_a_checkpoint_carries_the_frozen_parts_when_asked(audioldm, tmp_path):
    """With bundle_frozen_parts, a checkpoint loaded where `audioldm_root` no longer exists still decodes with
    the VAE it was trained with (and the files load with weights_only)."""
    module = tiny_tiva(audioldm, "joint", vocoder="griffin_lim", bundle_frozen_parts=True).eval()
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "last.ckpt")
    assert not any(k.startswith(("pipeline.", "vae.")) for k in checkpoint["state_dict"])  # S, T, G only

    moved = tiny_tiva(tmp_path / "nowhere", "joint", vocoder="griffin_lim").eval()
    loaded = torch.load(tmp_path / "last.ckpt", weights_only=True)
    moved.on_load_checkpoint(loaded)
    moved.load_state_dict(loaded["state_dict"])
    vae, again = module.pipeline.vae.state_dict(), moved.pipeline.vae.state_dict()
    assert vae.keys() == again.keys() and all(torch.equal(vae[k], again[k]) for k in vae)
    assert moved.pipeline.vae.config.scaling_factor == module.pipeline.vae.config.scaling_factor
    assert isinstance(moved.pipeline.vocoder, GriffinLimVocoder)
    batch = tiny_batch()
    first, second = (m.generate(batch, torch.Generator().manual_seed(3)) for m in (module, moved))
    assert torch.equal(first["logmel"], second["logmel"])

    unbundled = tiny_tiva(audioldm, "joint", vocoder="griffin_lim")
    checkpoint = {}
    unbundled.on_save_checkpoint(checkpoint)
    assert FROZEN_PARTS_KEY not in checkpoint  # paper configs: AudioLDM2 stays in its snapshot


def test_the_metrics_score_the_first_eval_seconds(audioldm):
    wave = torch.randn(2, 3 * 16000)
    assert torch.equal(tiny_tiva(audioldm, eval_seconds=1.5).scored(wave), wave[:, :24000])
    assert torch.equal(tiny_tiva(audioldm, eval_seconds=8.0).scored(wave), wave)  # shorter clips: whole
    assert torch.equal(tiny_tiva(audioldm, eval_seconds=None).scored(wave), wave)


def test_validation_examples_land_in_tensorboard(audioldm, tmp_path):
    module = tiny_tiva(audioldm, "joint", vocoder="griffin_lim").eval()
    batch = tiny_batch(3)
    examples = module.examples(batch)
    mel, layout = examples.pictures["mel_generated_real"], examples.pictures["layout_predicted_true"]
    assert mel.shape == layout.shape == (3, 64, 2 * (WAVE // 160) + 2)  # two pictures and a gap, side by side
    assert mel.min() >= 0 and mel.max() <= 1
    real = module.front_end(batch["wave"])
    assert torch.allclose(
        layout[:, :, WAVE // 160 + 2 :].amax(dim=(1, 2)), module.front_end.layout(real).amax(dim=(1, 2))
    )
    assert examples.sounds["generated"].shape == examples.sounds["real"].shape == (3, WAVE)
    assert examples.sample_rate == 16000

    logger = TensorBoardLogger(tmp_path, name="", version="")
    trainer = SimpleNamespace(
        sanity_checking=False, is_global_zero=True, current_epoch=0, global_step=7, loggers=[logger]
    )
    callback = ExampleLogger(n_examples=2)
    callback.on_validation_batch_end(trainer, module, None, batch, 0)
    callback.on_validation_end(trainer, module)
    logger.experiment.flush()
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0, "audio": 0})
    events.Reload()
    images, audio = set(events.Tags()["images"]), set(events.Tags()["audio"])
    assert {
        f"examples/{name}/{i}" for name in ("mel_generated_real", "layout_predicted_true") for i in (0, 1)
    } == images
    assert {f"audio/{name}/{i}" for name in ("generated", "real") for i in (0, 1)} == audio
    assert (
        events.Audio("audio/real/0")[0].sample_rate == 16000
        and events.Images("examples/mel_generated_real/0")[0].step == 7
    )


def test_stage_and_layout_settings_must_agree(audioldm):
    with pytest.raises(ValueError, match="no_layout"):
        tiny_tiva(audioldm, "no_layout", sampling=SamplingSettings(layout="predicted"))
    with pytest.raises(ValueError, match="no_layout"):
        tiny_tiva(audioldm, "joint", sampling=SamplingSettings(layout="none"))
    with pytest.raises(ValueError, match="sampling.sampler"):
        SamplingSettings(sampler="euler")
    assert tiny_tiva(audioldm).front_end.layout_size == LAYOUT


def test_sampling_settings_read_back_from_a_saved_run_config(tmp_path):
    """What `avgen generate` reads: the `sampling` block of a run's config.yaml, DPM-Solver's options nested."""
    import dataclasses

    import yaml

    from shared.diffusion import DPMSolverOptions

    saved = SamplingSettings(steps=7, guidance_scale=2.0, dpm_solver=DPMSolverOptions(spacing="linspace"))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"sampling": dataclasses.asdict(saved)}))
    read = SamplingSettings.from_config(yaml.safe_load((tmp_path / "config.yaml").read_text())["sampling"])
    assert read == saved and isinstance(read.dpm_solver, DPMSolverOptions)
    assert SamplingSettings.from_config({}) == SamplingSettings()
