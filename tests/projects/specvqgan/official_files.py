"""Files shaped like the official classifier checkpoints (Melception, VGGish-ish) of `v-iashin/SpecVQGAN`.

`specvqgan/modules/losses/vggishish/logger.py` (`log_best_model`) saves
`{'loss': float, 'metrics': metrics_dict, 'epoch': int, 'optimizer': optimizer.state_dict(), 'model': ...}`,
where `metrics_dict` comes from `specvqgan/modules/losses/vggishish/metrics.py`: `accuracy_1` and
`accuracy_5` are Python floats, `mAP`, `mROCAUC` and `dprime` numpy float64 (numpy / scipy results). The
released files were written in 2021 by numpy 1.x, which pickles those scalars as
`numpy.core.multiarray.scalar`; numpy 2 writes `numpy._core.multiarray.scalar`, so the pickle is rewritten
to the old name.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import torch

NUMPY1_SCALAR = b"numpy.core.multiarray\nscalar\n"


def save_official_classifier(state: dict[str, torch.Tensor], path: Path, epoch: int = 13) -> Path:
    """Save `state` (the network's state dict) in the official layout, metrics and Adam state included."""
    param = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.Adam([param], lr=3e-4, betas=(0.9, 0.999), weight_decay=0.0)
    param.grad = torch.ones(3)
    optimizer.step()
    metrics = {
        "accuracy_1": 0.4449,
        "accuracy_5": 0.7379,
        "mAP": np.float64(0.4758),
        "mROCAUC": np.float64(0.9666),
        "dprime": np.float64(2.6),
    }
    checkpoint = {
        "loss": 2.41,
        "metrics": metrics,
        "epoch": epoch,
        "optimizer": optimizer.state_dict(),
        "model": state,
    }
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    with zipfile.ZipFile(buffer) as source, zipfile.ZipFile(path, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith("/data.pkl"):
                data = data.replace(b"numpy._core.multiarray\nscalar\n", NUMPY1_SCALAR)
                assert NUMPY1_SCALAR in data
            target.writestr(info, data)
    return path
