"""Loading Im2Wav's official checkpoints (`RoySheffer/im2wav`, arXiv:2211.03089) and the official Wav2CLIP into
our modules.

    vqvae = load_official("pre_trained/vqvae.tar")    # WaveVQVAE: encode(wav [B, T]) -> [codes_up, codes_low]
    low = load_official("pre_trained/low.tar")        # LowPrior: logits(codes_low, clip), sample(clip, ...)
    up = load_official("pre_trained/up.tar")          # UpPrior: logits(codes_up, codes_low, clip)
    wav2clip = load_official_wav2clip("Wav2CLIP.pt")  # forward(wav [B, T] at 16 kHz) -> [B, 512]

An official file is what `models/make_models.py` `save_checkpoint` writes under DistributedDataParallel:
`{'hps', 'model', 'opt', 'step'}` with every `model` key prefixed `module.`. The model is built from the file's
own `hps` (`make_vqvae` / `make_prior`): a VQ-VAE file's hps carry the prior defaults too, so the kinds are told
apart by `hps['prior']` and, for priors, `hps['level']` (the top level is Low, the one below it Up).

Key mapping (official -> ours):

- VQ-VAE: `encoders.*`, `decoders.*` keep their names; the codebook `bottleneck.level_blocks.{l}.k` becomes
  `...codebook`, with the EMA statistics set as the official `restore_k` does (sum = codebook, count 1) and
  the quantiser marked as initialised, so fine-tuning continues from the loaded codes.
- Priors: `prior.transformer._attn_mods.{d}.{attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj}.{w, b}` ->
  `prior.blocks.{d}.*.{weight, bias}` (Jukebox's `Conv1D` stores w as (in, out): transposed into
  `nn.Linear`; `all_fp16` files store these w in float16, cast to float32 as the official forward does),
  `ln_0` / `ln_1` keep their names, `prior.pos_emb.pos_emb` -> `prior.pos_emb`, `prior.x_emb.weight` as is and
  `prior.x_out.weight` checked equal to it (the two are tied). Low: `y_emb.{clip_map, video_map, null_CLIP,
  null_video_CLIP}` -> `conditioner.*`, `y_emb.{total_length, absolute_pos, relative_pos}_emb.emb` ->
  `conditioner.time_signal.*`. Up: `y_emb.clip_map` -> `clip_map`, `conditioner_blocks.0.*` -> `upsampler.*`
  (the residual units under `blocks`, named so by the official gradient checkpointing, -> `model`).

Every tensor of the file must be used and every tensor of our model filled, with the right shape; otherwise a
`UserError` names the file and the keys. The loaded model is in eval mode and computes as the official code does
on a GPU: its MLP applies quick-GELU (the official code drops it on a machine without CUDA, `use_cuda` in
`models/transformer/transformer.py`). `conversion_report` on the returned module lists what was mapped.
"""

from __future__ import annotations

import logging
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from projects.gravo.models.priors import LowPrior, UpPrior
from projects.gravo.models.vqvae import WaveVQVAE
from shared.encoders.wav2clip import Wav2CLIP, load_wav2clip
from shared.runs import UserError

log = logging.getLogger(__name__)

# Im2Wav's inference labels (`models/sample.py`): the values our LowPrior's time signal is built for
SUPPORTED_TIME_SIGNAL = {"sr": 16000, "min_duration": 2.05, "max_duration": 600.0}


@dataclass
class ConversionReport:
    """What `load_official` took from a file: official key -> our key, and the tensors stored in float16."""

    kind: str
    mapped: dict[str, str] = field(default_factory=dict)
    tied: list[str] = field(default_factory=list)  # official keys checked equal to a mapped tensor
    float16: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"{self.kind}: mapped {len(self.mapped)} tensors, tied {self.tied}"
        if self.float16:
            text += f"; {len(self.float16)} float16 Conv1D weights cast to float32"
        return text


def _read(path: Path) -> dict:
    if not path.is_file():
        raise UserError(
            f"{path}: no such Im2Wav checkpoint (the official ones are vqvae.tar, low.tar, up.tar)"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        raise UserError(f"{path}: not a readable torch checkpoint ({error})") from error
    if (
        not isinstance(checkpoint, dict)
        or not isinstance(checkpoint.get("hps"), dict)
        or "model" not in checkpoint
    ):
        raise UserError(f"{path}: not an Im2Wav checkpoint (expected a dict with 'hps' and 'model')")
    return checkpoint


def checkpoint_kind(hps: dict, path: Path | str = "<hps>") -> str:
    """'vqvae', 'low' or 'up' from a file's hps: `prior` False is a VQ-VAE (whose hps also hold the prior
    defaults, `level` 0 among them); a prior's `level` is levels - 1 for Low and levels - 2 for Up."""
    if not hps.get("prior"):
        return "vqvae"
    level, levels = hps.get("level"), hps.get("levels")
    if levels == 2 and level in (0, 1):
        return "low" if level == 1 else "up"
    raise UserError(
        f"{path}: a prior of level {level} of {levels}; Im2Wav has Low (level 1) and Up (level 0) of 2"
    )


def _require(hps: dict, path: Path, **expected) -> None:
    """Settings our modules do not implement another way: fail with the file and the values."""
    wrong = {k: hps.get(k) for k, v in expected.items() if hps.get(k) != v}
    if wrong:
        raise UserError(f"{path}: unsupported Im2Wav settings {wrong} (supported: {expected})")


def _hops(hps: dict) -> list[int]:
    hops, hop = [], 1
    for stride, down in zip(hps["strides_t"], hps["downs_t"], strict=True):
        hop *= stride**down
        hops.append(hop)
    return hops


def build_vqvae(hps: dict, path: Path) -> WaveVQVAE:
    """`make_vqvae`'s model with our classes."""
    multipliers = hps.get("hvqvae_multipliers")
    if multipliers is not None and any(m != 1 for m in multipliers):
        raise UserError(f"{path}: unsupported hvqvae_multipliers {multipliers} (Im2Wav uses none)")
    _require(hps, path, vqvae_reverse_decoder_dilation=True, use_bottleneck=True)
    return WaveVQVAE(
        downs_t=tuple(hps["downs_t"]),
        strides_t=tuple(hps["strides_t"]),
        emb_width=hps["emb_width"],
        l_bins=hps["l_bins"],
        l_mu=hps["l_mu"],
        commit=hps["commit"],
        restart_threshold=hps.get("revival_threshold", 1.0),
        width=hps["width"],
        depth=hps["depth"],
        m_conv=hps["m_conv"],
        dilation_growth_rate=hps["dilation_growth_rate"],
        dilation_cycle=hps["dilation_cycle"],
    )


def _transformer_sizes(hps: dict) -> dict:
    width = hps["prior_width"]
    return dict(
        n_codes=hps["l_bins"],
        n_ctx=hps["n_ctx"],
        width=width,
        depth=hps["prior_depth"],
        n_head=hps["heads"],
        attn_width=int(hps["m_attn"] * width),
        mlp_width=int(hps["m_mlp"] * width),
        block_ctx=hps["n_ctx"] // hps["blocks"],
        attn_order=hps["attn_order"],
        init_scale=hps["init_scale"],
    )


def build_prior(hps: dict, kind: str, path: Path) -> LowPrior | UpPrior:
    """`make_prior`'s model with our classes (Low: the top level, CLIP per frame; Up: conditioned on Low codes)."""
    _require(hps, path, clip_emb=True, use_tokens=False, single_enc_dec=False, merged_decoder=False,
             res_scale=False, pos_init=False)  # fmt: skip
    if hps["n_ctx"] % hps["blocks"]:
        raise UserError(f"{path}: n_ctx {hps['n_ctx']} is not a multiple of blocks {hps['blocks']}")
    if kind == "low":
        _require(hps, path, video_clip_emb=True, **SUPPORTED_TIME_SIGNAL)
        return LowPrior(**_transformer_sizes(hps), hop=_hops(hps)[hps["level"]], n_time_bins=hps["t_bins"])
    cond_level = hps["level"] + 1
    _require(hps, path, cond_m_conv=1.0, cond_res_scale=False)
    if hps["strides_t"][cond_level] != 2:
        raise UserError(
            f"{path}: the Up conditioner upsamples by stride 2, not {hps['strides_t'][cond_level]}"
        )
    return UpPrior(
        **_transformer_sizes(hps),
        cond_width=hps["cond_width"],
        cond_depth=hps["cond_depth"],
        cond_dilation_growth_rate=hps["cond_dilation_growth_rate"],
        cond_dilation_cycle=hps["cond_dilation_cycle"],
        n_up=hps["downs_t"][cond_level],
    )


_CONV1D = re.compile(
    r"prior\.transformer\._attn_mods\.(\d+)\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.([wb])"
)
_LAYER_NORM = re.compile(r"prior\.transformer\._attn_mods\.(\d+)\.(ln_[01]\.(?:weight|bias))")
_UPSAMPLER_UNIT = re.compile(r"conditioner_blocks\.0\.cond\.model\.(\d+)\.0\.blocks\.(.*)")
_TIME_SIGNAL = re.compile(r"y_emb\.((?:total_length|absolute_pos|relative_pos)_emb\.emb\.weight)")


def our_key(key: str, kind: str) -> str | None:
    """Our name of an official tensor (None: not one we know)."""
    if kind == "vqvae":
        if m := re.fullmatch(r"bottleneck\.level_blocks\.(\d+)\.k", key):
            return f"bottleneck.level_blocks.{m[1]}.codebook"
        return key if key.startswith(("encoders.", "decoders.")) else None
    if m := _CONV1D.fullmatch(key):
        return f"prior.blocks.{m[1]}.{m[2]}.{'weight' if m[3] == 'w' else 'bias'}"
    if m := _LAYER_NORM.fullmatch(key):
        return f"prior.blocks.{m[1]}.{m[2]}"
    if key == "prior.pos_emb.pos_emb":
        return "prior.pos_emb"
    if key == "prior.x_emb.weight":
        return key
    if kind == "low":
        if m := _TIME_SIGNAL.fullmatch(key):
            return f"conditioner.time_signal.{m[1]}"
        if key.startswith("y_emb."):
            return "conditioner." + key.removeprefix("y_emb.")
        return None
    if key.startswith("y_emb.clip_map."):
        return key.removeprefix("y_emb.")
    if m := _UPSAMPLER_UNIT.fullmatch(key):
        return f"upsampler.cond.model.{m[1]}.0.model.{m[2]}"
    if key.startswith("conditioner_blocks.0."):
        return "upsampler." + key.removeprefix("conditioner_blocks.0.")
    return None


def _convert(
    official: dict[str, torch.Tensor], model: nn.Module, kind: str, path: Path
) -> tuple[dict, ConversionReport]:
    report = ConversionReport(kind)
    expected = model.state_dict()
    ours, unused, problems = {}, [], []
    for key, value in official.items():
        if kind != "vqvae" and key == "prior.x_out.weight":
            report.tied.append(key)
            continue
        name = our_key(key, kind)
        if name is None or name not in expected:
            unused.append(key)
            continue
        if value.dtype == torch.float16:
            report.float16.append(key)
        value = value.float()
        if _CONV1D.fullmatch(key) and key.endswith(".w"):
            value = value.t()
        if value.shape != expected[name].shape:
            problems.append(f"{key} {tuple(value.shape)} != {name} {tuple(expected[name].shape)}")
        ours[name] = value
        report.mapped[key] = name
    filled_by_file = set(ours)
    if kind == "vqvae":  # the EMA statistics come from the codebook, as the official `restore_k` sets them
        for name in [k for k in ours if k.endswith(".codebook")]:
            base = name.removesuffix("codebook")
            ours[base + "ema_sum"] = ours[name].clone()
            ours[base + "ema_count"] = torch.ones(ours[name].shape[0])
            ours[base + "updates"] = torch.ones((), dtype=torch.long)
    else:
        ours["prior.x_out.weight"] = ours.get("prior.x_emb.weight")
        x_out = official.get("prior.x_out.weight")
        if x_out is None:
            problems.append("no prior.x_out.weight (Im2Wav saves the tied output weights)")
        elif "prior.x_emb.weight" in ours and not torch.equal(x_out.float(), ours["prior.x_emb.weight"]):
            problems.append("prior.x_out.weight differs from prior.x_emb.weight (Im2Wav ties them)")
    missing = [k for k in expected if k not in ours or ours[k] is None]
    if unused or missing or problems:
        raise UserError(
            f"{path}: does not fit Im2Wav's {kind} ({len(filled_by_file)} tensors mapped): "
            f"unused {unused[:8]}{'...' if len(unused) > 8 else ''}; missing {missing[:8]}"
            f"{'...' if len(missing) > 8 else ''}; {'; '.join(problems[:5])}"
        )
    return ours, report


KINDS = {"vqvae": "VQ-VAE", "low": "Low prior", "up": "Up prior"}


def load_official(path: str | Path, kind: str | None = None) -> WaveVQVAE | LowPrior | UpPrior:
    """An official Im2Wav checkpoint (`vqvae.tar`, `low.tar`, `up.tar`) as our module, in eval mode and frozen.

    kind ("vqvae", "low", "up"): the kind the caller needs; a file of another kind is a `UserError`."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)} or None, got {kind!r}")
    path = Path(path)
    checkpoint = _read(path)
    hps = checkpoint["hps"]
    found = checkpoint_kind(hps, path)
    if kind is not None and kind != found:
        raise UserError(f"{path}: an Im2Wav {KINDS[found]} checkpoint, expected the {KINDS[kind]}")
    kind = found
    official = {k.removeprefix("module."): v for k, v in checkpoint["model"].items()}
    model = build_vqvae(hps, path) if kind == "vqvae" else build_prior(hps, kind, path)
    state, report = _convert(official, model, kind, path)
    del checkpoint, official  # the file's float16 originals: only their float32 copies are needed now
    model.load_state_dict(state)
    log.info("%s: %s", path, report)
    model.conversion_report = report
    return model.eval().requires_grad_(False)


def load_official_wav2clip(path: str | Path) -> Wav2CLIP:
    """The official `Wav2CLIP.pt` (`descriptinc/lyrebird-wav2clip`, a flat state dict of `audio_encoder.*` and
    `audio_transform.*`), every tensor used: `forward(wav [B, T] float32 at 16 kHz) -> [B, 512]`, each item
    normalised by its own statistics (the official normalisation over the whole batch equals it at B = 1)."""
    model = load_wav2clip(path)
    report = model.conversion_report
    if report.prefix or report.skipped:
        raise UserError(
            f"{path}: not the official Wav2CLIP layout (prefix {report.prefix!r}, unused {report.skipped[:8]}); "
            "load checkpoints trained here with shared.encoders.wav2clip.load_wav2clip"
        )
    return model
