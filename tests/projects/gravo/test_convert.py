"""projects.gravo.convert: official Im2Wav files (written by the independent re-creation in official_im2wav.py)
load into our modules with every tensor used and give the re-creation's codes, audio and logits; float16
Conv1D weights are accepted; wrong kinds, missing, extra and misshapen tensors are errors naming the file;
the official Wav2CLIP file loads strictly. The slow test writes paper-size files and loads them."""

from __future__ import annotations

import gc

import pytest
import torch

from projects.gravo.convert import load_official, load_official_wav2clip
from projects.gravo.models.priors import LowPrior, UpPrior
from projects.gravo.models.vqvae import WaveVQVAE
from shared.runs import UserError
from tests.shared.test_wav2clip import OfficialPretraining, randomise

from .official_im2wav import (
    TINY,
    build_official,
    official_hps,
    randomize_,
    to_fp16_params_,
    write_official_checkpoint,
)
from .test_official_im2wav import PAPER_PARAMETERS, official_keys

FRAMES = 123  # CLIP frames of a 4.096-s window at 30 fps, as the official sampler slices them


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see tests/conftest.py


def official_file(tmp_path, kind: str, fp16: bool = False, seed: int = 1, **sizes):
    """(the re-creation with random weights, its official-layout file)."""
    hps = official_hps(kind, **{**TINY[kind], **sizes})
    reference = randomize_(build_official(hps), seed=seed).eval()
    if fp16:
        to_fp16_params_(reference)
    return reference, write_official_checkpoint(reference, hps, tmp_path / f"{kind}.tar")


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return float((ours - reference).abs().max() / reference.abs().max())


def assert_every_key_used(model, path) -> None:
    report = model.conversion_report
    file_keys = torch.load(path, map_location="cpu", weights_only=False)["model"]
    assert len(report.mapped) + len(report.tied) == len(file_keys)
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_vqvae_codes_and_audio_equal_the_official_ones(tmp_path):
    reference, path = official_file(tmp_path, "vqvae")
    model = load_official(path)
    assert isinstance(model, WaveVQVAE)
    assert_every_key_used(model, path)
    wav = 0.3 * torch.randn(3, 2048, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        codes_up, codes_low = model.encode(wav)
        expected = reference.encode(wav[..., None])
        audio, expected_audio = model.decode(codes_up), reference.decode(expected[:1])[..., 0]
    assert codes_up.shape == (3, 2048 // 8) and codes_low.shape == (3, 2048 // 32)
    assert codes_up.dtype == codes_low.dtype == torch.long
    assert torch.equal(codes_up, expected[0]) and torch.equal(codes_low, expected[1])
    assert codes_up.unique().numel() > 16 and codes_low.unique().numel() > 8  # codes spread over the book
    assert audio.shape == wav.shape and audio.dtype == torch.float32
    assert relative_error(audio, expected_audio) < 1e-5


@pytest.mark.parametrize("fp16", [False, True])
def test_low_prior_logits_equal_the_official_ones(tmp_path, fp16):
    reference, path = official_file(tmp_path, "low", fp16=fp16)
    model = load_official(path)
    assert isinstance(model, LowPrior)
    assert_every_key_used(model, path)
    assert len(model.conversion_report.float16) == (4 * TINY["low"]["prior_depth"] if fp16 else 0)
    gen = torch.Generator().manual_seed(0)
    clip = torch.nn.functional.normalize(torch.randn(2, FRAMES, 512, generator=gen), dim=-1)
    codes_low = torch.randint(0, 64, (2, reference.n_ctx), generator=gen)
    with torch.no_grad():
        logits, expected = model.logits(codes_low, clip), reference.logits(codes_low, clip)
    assert logits.shape == (2, reference.n_ctx, 64)
    assert relative_error(logits, expected) < 1e-5


@pytest.mark.parametrize("fp16", [False, True])
def test_up_prior_logits_equal_the_official_ones(tmp_path, fp16):
    reference, path = official_file(tmp_path, "up", fp16=fp16)
    model = load_official(path)
    assert isinstance(model, UpPrior)
    assert_every_key_used(model, path)
    gen = torch.Generator().manual_seed(0)
    clip = torch.nn.functional.normalize(torch.randn(2, FRAMES, 512, generator=gen), dim=-1)
    codes_up = torch.randint(0, 64, (2, reference.n_ctx), generator=gen)
    codes_low = torch.randint(0, 64, (2, reference.n_ctx // 4), generator=gen)
    with torch.no_grad():
        logits = model.logits(codes_up, codes_low, clip)
        expected = reference.logits(codes_up, clip, codes_low)
    assert logits.shape == (2, reference.n_ctx, 64)
    assert relative_error(logits, expected) < 1e-5


@pytest.mark.parametrize("kind", ["low", "up"])
def test_paper_context_lengths_at_narrow_width(tmp_path, kind):
    """n_ctx and block_ctx of the paper (Low 2048 / 32, Up 8192 / 128) with a narrow transformer: the Low time
    signal's relative-position bins 0-26 and the 2048-tokens-from-123-frames map, the Up upsampler from 2048
    Low codes, and every attention block boundary at its real place."""
    sizes = {"n_ctx": 2048 if kind == "low" else 8192, "blocks": 64, "prior_depth": 3, "sample_length": 65536}
    reference, path = official_file(tmp_path, kind, **sizes)
    model = load_official(path)
    gen = torch.Generator().manual_seed(0)
    clip = torch.nn.functional.normalize(torch.randn(1, FRAMES, 512, generator=gen), dim=-1)
    codes = torch.randint(0, 64, (1, sizes["n_ctx"]), generator=gen)
    with torch.no_grad():
        if kind == "low":
            logits, expected = model.logits(codes, clip), reference.logits(codes, clip)
        else:
            codes_low = torch.randint(0, 64, (1, 2048), generator=gen)
            logits, expected = model.logits(codes, codes_low, clip), reference.logits(codes, clip, codes_low)
    assert relative_error(logits, expected) < 1e-5


def test_float16_weights_are_the_rounded_values(tmp_path):
    """An all_fp16 file holds rounded Conv1D weights: ours compute with exactly those, in float32."""
    reference, path = official_file(tmp_path, "low", fp16=True)
    model = load_official(path)
    official_w = reference.prior.transformer._attn_mods[0].attn.c_attn.w
    assert official_w.dtype == torch.float16
    ours = model.prior.blocks[0].attn.c_attn.weight
    assert ours.dtype == torch.float32 and torch.equal(ours, official_w.float().t())


def test_wrong_kind_is_an_error_naming_the_file(tmp_path):
    _, vqvae = official_file(tmp_path, "vqvae")
    with pytest.raises(UserError, match=rf"{vqvae}.*VQ-VAE.*expected the Low prior"):
        load_official(vqvae, kind="low")
    assert isinstance(load_official(vqvae, kind="vqvae"), WaveVQVAE)
    lightning = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, "epoch": 0}, lightning)
    with pytest.raises(UserError, match=rf"{lightning}: not an Im2Wav checkpoint"):
        load_official(lightning)
    with pytest.raises(UserError, match="no such Im2Wav checkpoint"):
        load_official(tmp_path / "absent.tar")
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=rf"{garbage}: not a readable"):
        load_official(garbage)


def _rewrite(path, edit) -> None:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    edit(checkpoint)
    torch.save(checkpoint, path)


def test_missing_extra_and_misshapen_tensors_are_errors_naming_them(tmp_path):
    _, path = official_file(tmp_path, "low")
    _rewrite(path, lambda c: c["model"].pop("module.y_emb.null_video_CLIP"))
    with pytest.raises(UserError, match=rf"{path}.*missing \['conditioner.null_video_CLIP'\]"):
        load_official(path)

    _, path = official_file(tmp_path, "up")
    _rewrite(path, lambda c: c["model"].update({"module.prior.start_token": torch.zeros(1, 32)}))
    with pytest.raises(UserError, match=rf"{path}.*unused \['prior.start_token'\]"):
        load_official(path)

    _, path = official_file(tmp_path, "vqvae")
    _rewrite(path, lambda c: c["model"].update({"module.bottleneck.level_blocks.1.k": torch.zeros(32, 16)}))
    with pytest.raises(UserError, match=rf"{path}.*bottleneck.level_blocks.1.k \(32, 16\)"):
        load_official(path)

    _, path = official_file(tmp_path, "low")

    def untie(checkpoint):
        state = checkpoint["model"]
        state["module.prior.x_out.weight"] = state["module.prior.x_out.weight"] + 1

    _rewrite(path, untie)
    with pytest.raises(UserError, match="x_out.weight differs"):
        load_official(path)


def test_unsupported_settings_are_errors_naming_them(tmp_path):
    _, path = official_file(tmp_path, "low")
    _rewrite(path, lambda c: c["hps"].update(max_duration=300.0))
    with pytest.raises(UserError, match=rf"{path}: unsupported Im2Wav settings \{{'max_duration': 300.0\}}"):
        load_official(path)
    _rewrite(path, lambda c: c["hps"].update(level=2, levels=3))
    with pytest.raises(UserError, match=rf"{path}: a prior of level 2 of 3"):
        load_official(path)


def test_official_wav2clip_loads_with_every_key_and_matches(tmp_path):
    reference = randomise(OfficialPretraining(), seed=0)
    path = tmp_path / "Wav2CLIP.pt"
    torch.save(reference.state_dict(), path)
    model = load_official_wav2clip(path)
    assert model.conversion_report.loaded == len(reference.state_dict())
    wav = torch.randn(1, 16_000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out, expected = model(wav), reference(wav)
    assert out.shape == (1, 512)
    assert relative_error(out, expected) < 1e-4

    state = dict(reference.state_dict(), **{"image_transform.sequential.0.weight": torch.zeros(512, 512)})
    torch.save(state, tmp_path / "extra.pt")
    with pytest.raises(UserError, match=r"extra.pt: not the official Wav2CLIP layout.*image_transform"):
        load_official_wav2clip(tmp_path / "extra.pt")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["vqvae", "low", "up"])
def test_paper_size_official_files_load_with_every_key_used(tmp_path, kind):
    """Full-size files from the key lists' architecture (priors all_fp16 as released), one at a time."""
    torch.manual_seed(0)
    hps = official_hps(kind)
    reference = build_official(hps)
    assert [(k, tuple(v.shape)) for k, v in reference.state_dict().items()] == official_keys(kind)
    if kind != "vqvae":
        to_fp16_params_(reference)
    path = write_official_checkpoint(reference, hps, tmp_path / f"{kind}.tar")
    del reference
    gc.collect()
    model = load_official(path)
    report = model.conversion_report
    assert len(report.mapped) + len(report.tied) == len(official_keys(kind))
    assert len(report.float16) == (0 if kind == "vqvae" else 4 * 48)
    assert sum(p.numel() for p in model.parameters()) == PAPER_PARAMETERS[kind]  # the tied head counted once
    del model
    path.unlink()
    gc.collect()
