"""Reading SpecVQGAN's released per-frame visual features (`.pkl`) without trusting the pickles.

The official feature files (as `v-iashin/SpecVQGAN`, `specvqgan/data/vggsound.py`, `VGGSoundFeats` reads
them) are Python pickles of one float numpy array per clip:

- ResNet-50 (RGB): `feature_resnet50_dim2048_21.5fps/<clip>.pkl`, (215, 2048);
- BN-Inception (the paper's default, sec. 6.1.1): one RGB and one optical-flow pickle per clip, each
  (about 214-216, 1024), concatenated [rgb, flow] along the feature axis -> (T, 2048).

`pickle.load` runs whatever a pickle names, so a user-supplied file could execute code. `SafeUnpickler`
resolves only the handful of numpy callables that rebuild arrays (`_reconstruct`, `ndarray`, `dtype`,
`scalar`, `_frombuffer`, and `_codecs.encode`, which protocol-2 pickles use for raw bytes); any other
global stops the load with an error naming the file and the global. Hand-written because neither numpy
nor the standard library offers a restricted unpickler, and the pickles must be read as they were released
(old files name `numpy.core`, new numpy calls it `numpy._core`; Python 2 pickles are read as latin-1).
"""

from __future__ import annotations

import codecs
import importlib
import importlib.util
import pickle
from pathlib import Path

import numpy as np

_NUMPY_CORE = "numpy._core" if importlib.util.find_spec("numpy._core") is not None else "numpy.core"

# (module, name) -> (module to import it from, name): every global an ndarray pickle needs, nothing else
_ALLOWED = {
    **{
        (f"{core}.multiarray", name): (f"{_NUMPY_CORE}.multiarray", name)
        for core in ("numpy.core", "numpy._core")
        for name in ("_reconstruct", "scalar")
    },
    **{
        (f"{core}.numeric", "_frombuffer"): (f"{_NUMPY_CORE}.numeric", "_frombuffer")
        for core in ("numpy.core", "numpy._core")
    },
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
}


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle that names something other than numpy's array-rebuilding functions."""


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays, plain containers and numbers, and refuses any other global."""

    def __init__(self, file, path: str | Path = "<stream>"):
        super().__init__(file, encoding="latin1")  # numpy's advice for Python 2 pickles
        self.path = str(path)

    def find_class(self, module: str, name: str):
        if (module, name) == ("_codecs", "encode"):
            return codecs.encode
        if (module, name) in _ALLOWED:
            target_module, target_name = _ALLOWED[(module, name)]
            return getattr(importlib.import_module(target_module), target_name)
        raise UnsafePickleError(
            f"{self.path}: refusing to unpickle the global '{module}.{name}'; official feature files hold "
            "only numpy arrays (convert trusted files to .npy once, or check where this file came from)"
        )


def load_pickle(path: str | Path):
    """Unpickle `path` with `SafeUnpickler`: numpy arrays, containers and numbers only."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as f:
        try:
            return SafeUnpickler(f, path).load()
        except UnsafePickleError:
            raise
        except Exception as err:  # truncated or not a pickle at all
            raise pickle.UnpicklingError(
                f"{path}: not a readable pickle ({type(err).__name__}: {err})"
            ) from err


def load_official_features(path: str | Path) -> np.ndarray:
    """One official feature pickle as float32 [T, D] (ResNet-50: (215, 2048); BN-Inception: (~215, 1024))."""
    array = load_pickle(path)
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{path}: expected a numpy array of frame features, found {type(array).__name__}")
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number) or array.shape[0] == 0:
        raise ValueError(f"{path}: expected numeric frame features [T, D], found {array.dtype} {array.shape}")
    return array.astype(np.float32, copy=False)


def load_official_bninception(rgb_path: str | Path, flow_path: str | Path) -> np.ndarray:
    """The paper's default condition: BN-Inception RGB and flow features concatenated -> float32 [T, 2 D].

    Both files of a clip have the same number of frames (the official code concatenates them as they are);
    a mismatch is an error naming both files.
    """
    rgb, flow = load_official_features(rgb_path), load_official_features(flow_path)
    if rgb.shape[0] != flow.shape[0]:
        raise ValueError(
            f"{rgb_path} has {rgb.shape[0]} frames but {flow_path} has {flow.shape[0]}; "
            "RGB and flow features of one clip must have the same length"
        )
    return np.concatenate([rgb, flow], axis=1)


class OfficialFeatureFiles:
    """The official pre-extracted features of a dataset as a feature for the cache: float32 [T, D].

    `rgb` (and `flow`, for BN-Inception RGB + flow) are path patterns under `root` with the fields
    `{clip_id}`, `{label}` and `{name}` (the clip id's last `/` part), e.g.
    VGGSound `feature_resnet50_dim2048_21.5fps/{clip_id}.pkl`, VAS
    `{label}/feature_resnet50_dim2048_21.5fps/{name}.pkl`, VAS BN-Inception `rgb=`
    `{label}/feature_rgb_bninception_dim1024_21.5fps/{name}.pkl` with `flow=` `.../feature_flow_...`.
    Each file is read once, safely, and cached as `.npy` like any computed feature.
    """

    name = "official_features"  # the cache folder's name

    def __init__(self, root: str | Path, rgb: str, flow: str | None = None):
        self.root, self.rgb, self.flow = Path(root), rgb, flow

    def params(self) -> dict:
        return {"official_features": str(self.root.resolve()), "rgb": self.rgb, "flow": self.flow}

    def _path(self, pattern: str, record) -> Path:
        return self.root / pattern.format(
            clip_id=record.clip_id, label=record.label, name=record.clip_id.rsplit("/", 1)[-1]
        )

    def __call__(self, record) -> np.ndarray:
        if self.flow is None:
            return load_official_features(self._path(self.rgb, record))
        return load_official_bninception(self._path(self.rgb, record), self._path(self.flow, record))
