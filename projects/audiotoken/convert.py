"""Loading AudioToken's official checkpoints (`guyyariv/AudioToken`, arXiv:2305.13050) into our modules.

    embedder = load_official_embedder("output/embedder_learned_embeds.bin")  # forward(feats [B, N, C_in]) -> [B, D]

The official training (`train.py`) saves the Embedder as a plain state dict with no prefix (keys `fc1.*`,
`fc2.*`, `fga.un_models.0.*`, `fga.pp_models.0.*`, `fga.reduce_potentials.0.weight`); our `Embedder` has the
same names and shapes, so the file loads unchanged with strict=True.
"""

from __future__ import annotations

from pathlib import Path

import torch

from projects.audiotoken.models.embedder import Embedder
from shared.runs import UserError


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
