"""Loading of the official AudioToken checkpoints (arXiv:2305.13050, `guyyariv/AudioToken`) into our modules.

    beats = load_official_beats("BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt")
    feats = beats(wav)          # wav [B, T] float32 at 16 kHz in [-1, 1] -> [B, N, 3 * D] (blocks 4, 8, 12)

The audio encoder is the frozen BEATs of `microsoft/unilm` (`beats/`), loaded as AudioToken does
(`modules/AudioToken/AudioToken.py`: the file's `cfg` builds the model, `model` fills it, the fine-tuned
predictor is dropped) and read out as its copy of the encoder does (`modules/BEATs/backbone.py`: the outputs
of the blocks with 0-based index 3, 7 and 11, concatenated on channels).
"""

from __future__ import annotations

from pathlib import Path

from shared.encoders.beats import BEATs, load_beats

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
