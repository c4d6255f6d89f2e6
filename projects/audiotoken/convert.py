"""Loading of the official AudioToken checkpoints (arXiv:2305.13050, `guyyariv/AudioToken`) into our modules.

    beats = load_official_beats("BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt")
    feats = beats(wav)          # wav [B, T] float32 at 16 kHz in [-1, 1] -> [B, N, 3 * D] (blocks 4, 8, 12)
    embedder = load_official_embedder("output/embedder_learned_embeds.bin")
    token = embedder(feats)     # [B, N, C_in] -> [B, D]

The audio encoder is the frozen BEATs of `microsoft/unilm` (`beats/`), loaded as AudioToken does
(`modules/AudioToken/AudioToken.py`: the file's `cfg` builds the model, `model` fills it, the fine-tuned
predictor is dropped) and read out as its copy of the encoder does (`modules/BEATs/backbone.py`: the outputs
of the blocks with 0-based index 3, 7 and 11, concatenated on channels).

The official training (`train.py`) saves the Embedder as a plain state dict with no prefix (keys `fc1.*`,
`fc2.*`, `fga.un_models.0.*`, `fga.pp_models.0.*`, `fga.reduce_potentials.0.weight`); our `Embedder` has the
same names and shapes, so the file loads unchanged with strict=True.
"""

from __future__ import annotations

from pathlib import Path

import torch

from projects.audiotoken.models.embedder import Embedder
from shared.encoders.beats import BEATs, load_beats
from shared.runs import UserError

AUDIOTOKEN_LAYERS = (4, 8, 12)  # 1-based: the 4th, 8th and 12th of BEATs' 12 blocks (paper sec. 2.1)


def load_official_beats(path: str | Path) -> BEATs:
    """An official BEATs checkpoint ({'cfg': ..., 'model': ...}; fine-tuned releases also carry `predictor.*`
    and `label_dict`, which are ignored) as our encoder, frozen in eval mode and built from the file's cfg.

    forward(wav float32 [B, T] at 16 kHz in [-1, 1]; all clips the same length, no padding mask) -> [B, N, 3 D]:
    the outputs of blocks 4, 8 and 12 (1-based), each after its final LayerNorm, concatenated on channels, as
    the official code feeds its Embedder; the official preprocessing is inside (x 2^15, torchaudio's Kaldi
    fbank per clip, the official normalisation); N = floor((1 + floor((T - 400) / 160)) / 16) * 8, time-major.
    Resampling to 16 kHz happens before, not here. A file that does not fit is a `UserError` naming it.
    """
    return load_beats(path, layers=AUDIOTOKEN_LAYERS)


def load_official_embedder(path: str | Path, official_dropout: bool = False) -> Embedder:
    """The official `embedder_learned_embeds.bin` as our `Embedder` in eval mode.

    C_in = fc1.weight.shape[1] (3 x the audio encoder's width), D = fc2.weight.shape[0] (the text encoder's
    hidden size). The unary-branch dropout follows `module.training` unless `official_dropout` (the official
    inference's always-on dropout).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such Embedder checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserError(f"{path}: not a readable torch state dict ({error})") from error
    return embedder_from_state_dict(state, path, official_dropout)


def embedder_from_state_dict(state: dict, path: str | Path, official_dropout: bool = False) -> Embedder:
    """An `Embedder` in eval mode holding `state` (official key names), sized by it; `path` names its source in
    errors (the official file, or a checkpoint of our AudioToken stage whose `embedder.*` tensors it is)."""
    if not isinstance(state, dict) or "fc1.weight" not in state or "fc2.weight" not in state:
        keys = list(state)[:5] if isinstance(state, dict) else type(state).__name__
        raise UserError(
            f"{path}: not an AudioToken Embedder state dict (no fc1.weight / fc2.weight; got {keys})"
        )
    embedder = Embedder(state["fc1.weight"].shape[1], state["fc2.weight"].shape[0], official_dropout)
    expected = embedder.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise UserError(f"{path}: Embedder keys do not match: missing {missing}, unexpected {unexpected}")
    wrong_shapes = [
        f"{key} {list(state[key].shape)} (expected {list(value.shape)})"
        for key, value in expected.items()
        if state[key].shape != value.shape
    ]
    if wrong_shapes:
        raise UserError(f"{path}: Embedder tensors of the wrong shape: {', '.join(wrong_shapes)}")
    embedder.load_state_dict(state, strict=True)
    return embedder.eval()
