"""The prior LightningModule (GRAVO eq. 6 over Im2Wav's priors) with a tiny frozen VQ-VAE and Wav2CLIP."""

from __future__ import annotations

import math

import pytest
import torch

from projects.gravo.models import WaveVQVAE
from projects.gravo.models.gravo import GravoLossWeights, auxiliary_losses
from projects.gravo.models.priors import LowPrior, UpPrior
from projects.gravo.module_prior import GravoPrior
from shared.encoders.wav2clip import Wav2CLIP

N_CODES = 24
VQVAE = dict(l_bins=N_CODES, emb_width=8, width=8, depth=1)
PRIOR = dict(n_codes=N_CODES, width=32, depth=3, attn_width=16, mlp_width=32, block_ctx=4, init_scale=1.0)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    """A tiny VQ-VAE in a checkpoint of the VQ-VAE stage (codebooks drawn from its encoders' outputs, so that the
    codes vary) and a tiny Wav2CLIP."""
    folder = tmp_path_factory.mktemp("frozen")
    torch.manual_seed(0)
    vqvae = WaveVQVAE(**VQVAE)
    with torch.no_grad():
        for encoder, level in zip(vqvae.encoders, vqvae.bottleneck.level_blocks, strict=True):
            z = encoder(torch.randn(4, 1, 1024) * 0.3).transpose(1, 2).reshape(-1, VQVAE["emb_width"])
            level.codebook.copy_(z[torch.randperm(len(z))[:N_CODES]])
    torch.save(
        {
            "hyper_parameters": {
                "vqvae": {"class_path": "projects.gravo.models.WaveVQVAE", "init_args": VQVAE}
            },
            "state_dict": {f"vqvae.{k}": v for k, v in vqvae.state_dict().items()},
        },
        folder / "vqvae.ckpt",
    )
    wav2clip = Wav2CLIP(widths=(4, 8, 8, 8), blocks=(1, 1, 1, 1), embed_dim=512)
    torch.save(wav2clip.state_dict(), folder / "wav2clip.pt")
    return {"vqvae_ckpt": str(folder / "vqvae.ckpt"), "wav2clip_ckpt": str(folder / "wav2clip.pt")}


def batch(size: int = 3, n_frames: int = 5) -> dict:
    torch.manual_seed(1)
    return {
        "wave": torch.randn(size, 512) * 0.3,  # 16 Low codes, 64 Up codes
        "clip_feats": torch.nn.functional.normalize(torch.randn(size, n_frames, 512), dim=-1),
        "offset": torch.tensor([0.0, 16_000.0, 3_200.0])[:size],
        "total_length": torch.full((size,), 32_000.0),
        "label": torch.zeros(size, dtype=torch.long),
        "clip_id": [f"clip{i}" for i in range(size)],
    }


def gravo_module(checkpoints, **kwargs) -> GravoPrior:
    torch.manual_seed(2)
    prior = LowPrior(n_ctx=16, frame_attention=True, **PRIOR)
    return GravoPrior(prior, **checkpoints, **kwargs)


def test_gravo_loss_is_eq_6_in_the_chosen_units(checkpoints):
    module = gravo_module(checkpoints, lambda_w=0.5, lambda_f=2.0, cfg_prob=0.0).eval()
    data = batch()
    with torch.no_grad():
        out = module.losses(data)
        codes_low = module.encode(data["wave"])[1]
        assert codes_low.unique().numel() > 1
        logits, frames = module.prior(codes_low, data["clip_feats"], data["offset"], data["total_length"])
        ce_nats = torch.nn.functional.cross_entropy(logits.flatten(0, 1), codes_low.flatten())
        w = module.frozen["wav2clip"](data["wave"])
        aux = auxiliary_losses(w, data["clip_feats"], frames, GravoLossWeights(0.5, 2.0, 0.9))
    torch.testing.assert_close(out["ce_bits"], ce_nats / math.log(2))
    torch.testing.assert_close(out["loss"], ce_nats / math.log(2) + 0.5 * aux["loss_w"] + 2.0 * aux["loss_f"])
    nats = gravo_module(checkpoints, lambda_w=0.5, lambda_f=2.0, cfg_prob=0.0, ce_units="nats").eval()
    with torch.no_grad():
        torch.testing.assert_close(
            nats.losses(data)["loss"], ce_nats + 0.5 * aux["loss_w"] + 2.0 * aux["loss_f"]
        )


def test_training_updates_only_the_prior(checkpoints):
    module = gravo_module(checkpoints, lambda_w=1e-4, lambda_f=1000.0).train()
    vqvae = module.frozen["vqvae"]
    frozen = {k: v.clone() for k, v in vqvae.state_dict().items()}
    loss = module.training_step(batch(), 0)
    loss.backward()
    assert torch.isfinite(loss)
    trained = [p for p in module.prior.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert len(trained) == len(list(module.prior.parameters()))
    assert all(p.grad is None for p in vqvae.parameters())
    assert all(p.grad is None for p in module.frozen["wav2clip"].parameters())
    assert all(torch.equal(v, vqvae.state_dict()[k]) for k, v in frozen.items())
    assert all(
        k.startswith(("prior.", "eval_means.")) for k in module.state_dict()
    )  # the frozen nets stay out


def test_up_prior_module_learns_the_up_codes(checkpoints):
    torch.manual_seed(3)
    prior = UpPrior(n_ctx=64, **PRIOR, cond_width=8, cond_depth=2, cond_dilation_cycle=None)
    module = GravoPrior(prior, vqvae_ckpt=checkpoints["vqvae_ckpt"], cfg_prob=0.0).eval()
    data = batch()
    with torch.no_grad():
        out = module.losses(data)
        codes_up, codes_low = module.encode(data["wave"])
        logits = prior(codes_up, codes_low, data["clip_feats"])
    assert set(out) == {"loss", "ce_bits", "frames"}
    torch.testing.assert_close(
        out["loss"], torch.nn.functional.cross_entropy(logits.flatten(0, 1), codes_up.flatten()) / math.log(2)
    )


def test_optimiser_warms_up_like_im2wav(checkpoints):
    module = gravo_module(checkpoints, weight_decay=0.01, warmup_steps=100)
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert {id(p) for group in optimizer.param_groups for p in group["params"]} == {
        id(p) for p in module.prior.parameters()
    }
    assert optimizer.param_groups[0]["weight_decay"] == 0.01 and optimizer.param_groups[0]["betas"] == (
        0.9,
        0.999,
    )
    lrs = []
    for _ in range(102):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == 0.0 and lrs[50] == pytest.approx(1.5e-4) and lrs[100] == lrs[101] == pytest.approx(3e-4)


def test_settings_that_cannot_apply_are_refused(checkpoints):
    up = UpPrior(n_ctx=64, **PRIOR, cond_width=8, cond_depth=2, cond_dilation_cycle=None)
    with pytest.raises(ValueError, match="no null condition"):
        GravoPrior(up, vqvae_ckpt=checkpoints["vqvae_ckpt"], cfg_prob=0.5)
    im2wav = LowPrior(n_ctx=16, **PRIOR)
    with pytest.raises(ValueError, match="frame attention"):
        GravoPrior(im2wav, **checkpoints, lambda_w=1e-4)
    with pytest.raises(ValueError, match="wav2clip_ckpt"):
        gravo_module({"vqvae_ckpt": checkpoints["vqvae_ckpt"]}, lambda_f=1000.0)
    with pytest.raises(ValueError, match="ce_units"):
        gravo_module(checkpoints, ce_units="bytes")


def test_validation_logs_ce_aux_losses_and_tcs(checkpoints):
    module = gravo_module(checkpoints, lambda_w=1e-4, lambda_f=1000.0).eval()
    logged = {}
    module.log = lambda name, value, **kwargs: logged.setdefault(name, value)
    with torch.no_grad():
        module.validation_step(batch(), 0)
    assert set(logged) == {"val/loss", "val/ce_bits", "val/loss_w", "val/loss_f", "val/tcs"}
    tcs = float(logged["val/tcs"].compute())
    assert -100 <= tcs <= 100


@pytest.mark.slow  # 15 optimisation steps
def test_a_few_steps_on_one_batch_lower_the_cross_entropy_and_pull_f_prime_to_its_targets(checkpoints):
    module = gravo_module(checkpoints, lambda_w=1e-4, lambda_f=1.0, cfg_prob=0.0).train()
    optimizer = torch.optim.Adam(module.prior.parameters(), lr=3e-3)
    data = batch()
    first = None
    for _ in range(15):
        out = module.losses(data)
        first = first or {k: float(out[k]) for k in ("ce_bits", "loss_f")}
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
    with torch.no_grad():
        last = module.eval().losses(data)
    assert float(last["ce_bits"]) < 0.85 * first["ce_bits"]
    assert float(last["loss_f"]) < 0.5 * first["loss_f"]
