"""Loading the official Melception (`melception-21-05-10T09-28-40.pt`) or our own Melception checkpoints.

    net = load_melception("melception-21-05-10T09-28-40.pt", "train_means_stds_melspec_10s_22050hz.txt")
    feats = net.features(mel01)              # mel01 [B, 1, 80, 848] in [0, 1]: '2048', 'logits', ...

The official file (`v-iashin/SpecVQGAN`, written by `specvqgan/modules/losses/vggishish/logger.py`,
`log_best_model`) holds `{'loss': float, 'metrics': {...}, 'epoch': int, 'optimizer': Adam state dict,
'model': state_dict}`; the weights are torchvision's Inception3 with the Melception changes
(arXiv:2110.08791, sec. 6.1.6; `evaluation/feature_extractors/melception.py`): 580 tensors whose names are
torchvision's, `AuxLogits.*` included, so every key maps onto `Melception` unchanged (a `module.` prefix from
DataParallel is stripped). The input statistics live in a separate text file (80 rows `mean std`, the
VGGSound training split, `specvqgan/modules/losses/vggishish/data/train_means_stds_melspec_10s_22050hz.txt`),
given as `stats_file`.

Files are read with `torch.load(weights_only=True)`, which loads tensors and plain containers but executes
no pickled code, plus exactly what the official `metrics` entry needs: numpy float64 scalars (mAP, mROCAUC
and d-prime come from sklearn / scipy), pickled by numpy 1.x as `numpy.core.multiarray.scalar` of a
`numpy.dtype` (numpy 2 writes `numpy._core.multiarray.scalar`). The official VGGish-ish file
(`vggishish16.pt`) has the same layout and is read the same way (`load_classifier_file`).
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from shared.encoders.mel_statistics import read_mel_statistics
from shared.encoders.melception import Melception

log = logging.getLogger(__name__)

STAT_BUFFERS = {"mel_mean", "mel_std"}  # ours; the official file keeps them in a text file
# numpy's scalar reconstructor, taken from a scalar so that it is found whatever module numpy keeps it in
_NUMPY_SCALAR = np.float64(0).__reduce__()[0]
NUMPY_FLOAT64 = [
    (_NUMPY_SCALAR, "numpy.core.multiarray.scalar"),  # the name numpy 1.x pickled (the official files)
    _NUMPY_SCALAR,  # the name this numpy pickles
    np.dtype,
    type(np.dtype(np.float64)),  # numpy.dtypes.Float64DType: the dtype object is rebuilt as this class
]


@dataclass
class MelceptionConversion:
    mapped: int = 0
    renamed: int = 0  # keys that lost a `module.` prefix
    unmapped: list[str] = field(default_factory=list)  # official keys with no place in our module
    missing: list[str] = field(default_factory=list)  # our keys the checkpoint did not provide

    def __str__(self) -> str:
        lines = [f"mapped {self.mapped} tensors ({self.renamed} without their 'module.' prefix)"]
        if self.unmapped:
            lines.append(f"could not map {len(self.unmapped)}: {self.unmapped[:10]}")
        if self.missing:
            lines.append(f"not in the checkpoint {len(self.missing)}: {self.missing[:10]}")
        return "; ".join(lines)


def convert_melception_state_dict(
    official: dict[str, torch.Tensor], model: Melception
) -> tuple[dict[str, torch.Tensor], MelceptionConversion]:
    report = MelceptionConversion()
    ours = model.state_dict()
    converted = {}
    for key, value in official.items():
        new_key = key.removeprefix("module.")
        report.renamed += new_key != key
        if new_key not in ours or ours[new_key].shape != value.shape:
            report.unmapped.append(key)
            continue
        converted[new_key] = value
        report.mapped += 1
    report.missing = sorted(set(ours) - set(converted) - STAT_BUFFERS)
    return converted, report


def load_classifier_file(path: Path, allow_pickle: bool = False) -> dict:
    """A classifier checkpoint (official or ours) as a dict, read as this module's docstring says."""
    try:
        with torch.serialization.safe_globals(NUMPY_FLOAT64):
            return torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"{path}: holds objects beyond tensors and plain containers, which weights_only loading "
            f"refuses ({str(error).splitlines()[0]}); if you trust the file, pass allow_pickle=True"
        ) from error


def load_melception(
    path: str | Path, stats_file: str | Path | None = None, allow_pickle: bool = False
) -> Melception:
    """The official Melception (with its statistics file) or one trained here, in eval mode.

    Our Lightning checkpoints (the `toy_melception` / `vggsound_melception` stages) carry the statistics in
    the network's buffers; `stats_file`, when given, overrides them. `conversion_report` on the returned
    module says what was mapped. Raises if a weight is missing or an official key has no place.
    """
    path = Path(path)
    ckpt = load_classifier_file(path, allow_pickle)
    if "state_dict" in ckpt and "hyper_parameters" in ckpt:
        from shared.classifier import SpectrogramClassifier

        net = SpectrogramClassifier.load_from_checkpoint(
            path, map_location="cpu", weights_only=not allow_pickle
        ).net
        if not isinstance(net, Melception):
            raise ValueError(f"{path}: a classifier checkpoint, but of {type(net).__name__}, not Melception")
        report = MelceptionConversion(mapped=len(net.state_dict()))
    elif "model" in ckpt:
        state = ckpt["model"]
        fc = state.get("fc.weight", state.get("module.fc.weight"))
        if fc is None:
            raise ValueError(f"{path}: 'model' has no fc.weight; not a Melception state dict")
        net = Melception(n_classes=fc.shape[0], width_divisor=2048 // fc.shape[1])
        converted, report = convert_melception_state_dict(state, net)
        if report.missing or report.unmapped:
            raise ValueError(f"{path}: does not fit Melception(n_classes={fc.shape[0]}): {report}")
        net.load_state_dict(converted, strict=False)
        if stats_file is None:
            raise ValueError(
                f"{path}: the official Melception needs its mel statistics file (stats_file=...)"
            )
    else:
        raise ValueError(f"{path}: neither an avgen classifier checkpoint nor an official Melception file")
    if stats_file is not None:
        net.set_mel_statistics(*read_mel_statistics(stats_file))
    log.info("%s: %s", path, report)
    net.conversion_report = report
    return net.eval()
