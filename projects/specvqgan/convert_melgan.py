"""Loading the official SpecVQGAN MelGAN vocoder (arXiv:2110.08791, sec. 3.3, 6.1.5; `v-iashin/SpecVQGAN`,
`vocoder/modules.py` and `vocoder/logs/vggsound/`) into our `MelGANGenerator`.

The release is a folder `vocoder/logs/vggsound/` with `best_netG.pt` (a plain state dict of the generator)
and `args.yml` (the training arguments: n_mel_channels 80, ngf 32, n_residual_layers 3, ...).

* Keys: the official generator was built with the old `torch.nn.utils.weight_norm`, so its convs hold
  `weight_g` and `weight_v`; ours use `torch.nn.utils.parametrizations.weight_norm`, whose state dict names
  the same two tensors `parametrizations.weight.original0` (g) and `original1` (v). Everything else
  (`model.N`, `block.2`, `shortcut`, biases) is named and shaped alike, so the mapping is that one rename,
  exact, and every key must be used: a checkpoint that leaves a weight of ours unset, or brings one we
  cannot place, raises. The same rename maps the official discriminator (`netD.pt`) onto our
  `MelGANDiscriminator` (`convert_melgan_state_dict`).
* `args.yml` is not plain YAML: the official training script dumps its `argparse.Namespace` with PyYAML,
  which writes Python tags (`!!python/object:argparse.Namespace`, `!!python/object/apply:pathlib.PosixPath`)
  that only PyYAML's unsafe loaders construct, and those would also run any other tag a tampered file
  carries. We read it with a safe loader that knows exactly those two tags (paths become strings) and
  refuses everything else; a pickled Namespace (some copies of the release are re-saved that way) goes
  through an unpickler that allows only `argparse.Namespace` and the pathlib path classes.
"""

from __future__ import annotations

import io
import logging
import pickle
from pathlib import Path, PurePosixPath, PureWindowsPath

import torch
import yaml
from torch import nn

from projects.specvqgan.models.melgan import MelGANGenerator

log = logging.getLogger(__name__)

OFFICIAL_WEIGHTS = "best_netG.pt"
OFFICIAL_ARGS = "args.yml"
_RENAMES = {
    "weight_g": "parametrizations.weight.original0",
    "weight_v": "parametrizations.weight.original1",
}
_PATH_CLASSES = {"PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath", "Path"}
_PATH_MODULES = {"pathlib", "pathlib._local"}  # Python >= 3.13 pickles paths from pathlib._local


class UnsafeArgsError(ValueError):
    """An args file asks to build something other than a Namespace of plain values and paths."""


# ----------------------------------------------------------------------------------------- args.yml
class _ArgsYamlLoader(yaml.SafeLoader):
    """yaml.SafeLoader plus the two Python tags an official `args.yml` uses, nothing more."""


def _construct_namespace(loader: yaml.SafeLoader, node: yaml.Node) -> dict:
    return loader.construct_mapping(node, deep=True)


def _construct_path(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    parts = [str(p) for p in loader.construct_sequence(node, deep=True)]
    return str(PurePosixPath(*parts)) if parts else "."


_ArgsYamlLoader.add_constructor("tag:yaml.org,2002:python/object:argparse.Namespace", _construct_namespace)
for _module in _PATH_MODULES:
    for _cls in ("PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath", "Path"):
        _ArgsYamlLoader.add_constructor(
            f"tag:yaml.org,2002:python/object/apply:{_module}.{_cls}", _construct_path
        )


class _ArgsUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) == ("argparse", "Namespace"):
            import argparse

            return argparse.Namespace
        if module in _PATH_MODULES and name in _PATH_CLASSES:
            return PureWindowsPath if "Windows" in name else PurePosixPath  # pure paths: no file access
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in an args file")


def _unpickle_args(data: bytes, path: Path) -> dict:
    try:
        obj = _ArgsUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as err:
        raise UnsafeArgsError(f"{path}: refusing to load this pickle: {err}") from err
    except Exception as err:
        raise ValueError(f"{path}: neither an argparse YAML dump nor a pickled Namespace ({err})") from err
    fields = vars(obj) if hasattr(obj, "__dict__") else obj
    if not isinstance(fields, dict):
        raise ValueError(f"{path}: holds a {type(obj).__name__}, not the training arguments")
    return {k: str(v) if isinstance(v, PurePosixPath | PureWindowsPath) else v for k, v in fields.items()}


def read_official_args(path: str | Path) -> dict:
    """The official vocoder's training arguments as a dict, read without running any code from the file.

    Accepts the PyYAML dump the official training script writes and a pickled `argparse.Namespace`.
    Raises `UnsafeArgsError` (a ValueError naming the file) for any other Python object in it.
    """
    path = Path(path)
    data = path.read_bytes()
    if data[:1] == b"\x80":  # pickle protocol >= 2
        return _unpickle_args(data, path)
    try:
        args = yaml.load(data.decode("utf-8"), Loader=_ArgsYamlLoader)  # the restricted loader above
    except yaml.constructor.ConstructorError as err:
        raise UnsafeArgsError(
            f"{path}: refusing to build {err.problem.split('tag ')[-1] if err.problem else 'an object'}; "
            "an args file may hold only an argparse.Namespace of plain values and paths"
        ) from err
    except (UnicodeDecodeError, yaml.YAMLError):
        return _unpickle_args(data, path)  # an old-protocol pickle is not YAML either
    if isinstance(args, dict):
        return args
    return _unpickle_args(data, path)  # protocol 0/1 pickles may read as a YAML string


# ------------------------------------------------------------------------------------ the weights
def official_melgan_key(key: str) -> str:
    """Official generator key -> ours: `model.1.weight_g` -> `model.1.parametrizations.weight.original0`."""
    head, _, last = key.rpartition(".")
    return f"{head}.{_RENAMES[last]}" if last in _RENAMES else key


def convert_melgan_state_dict(official: dict[str, torch.Tensor], model: nn.Module) -> dict:
    """Rename the official keys for `model` (our `MelGANGenerator` or `MelGANDiscriminator`: the official
    `netG` / `netD` state dicts differ from ours by the weight-norm names only); raises if a key or a shape
    does not fit."""
    ours = model.state_dict()
    converted, unmapped = {}, []
    for key, value in official.items():
        new_key = official_melgan_key(key)
        if new_key not in ours or ours[new_key].shape != value.shape:
            unmapped.append(f"{key} {tuple(value.shape)}")
            continue
        converted[new_key] = value
    missing = sorted(set(ours) - set(converted))
    if unmapped or missing:
        raise ValueError(
            f"official MelGAN weights do not fit our {type(model).__name__}({getattr(model, 'config', '')}): "
            f"could not place {unmapped[:5]}{'...' if len(unmapped) > 5 else ''}, "
            f"not provided {missing[:5]}{'...' if len(missing) > 5 else ''}"
        )
    return converted


def generator_config_from_state_dict(state: dict[str, torch.Tensor]) -> dict:
    """Sizes of the generator that produced an official-layout state dict (the upsampling ratios are
    read from the transposed convs' kernels: kernel 2r for ratio r)."""
    first = state["model.1.weight_v"]  # [16 ngf, n_mels, 7]
    convs = sorted(
        {int(k.split(".")[1]) for k in state if k.endswith("weight_v") and k.count(".") == 2}
    )  # the top-level convs: model.1, the transposed convs, the last conv
    transposed = convs[1:-1]
    ratios = [state[f"model.{i}.weight_v"].shape[-1] // 2 for i in transposed]
    n_units = len({k.split(".")[1] for k in state if ".shortcut." in k})
    return {
        "n_mels": first.shape[1],
        "ngf": first.shape[0] // 2 ** len(ratios),
        "n_residual_layers": n_units // max(len(ratios), 1),
        "ratios": ratios,
    }


def _official_files(path: Path) -> tuple[Path, Path | None]:
    if path.is_dir():
        weights = path / OFFICIAL_WEIGHTS
        if not weights.is_file():
            raise FileNotFoundError(f"{path}: no {OFFICIAL_WEIGHTS} in this official vocoder folder")
        args = path / OFFICIAL_ARGS
        if not args.is_file():
            raise FileNotFoundError(f"{path}: no {OFFICIAL_ARGS} beside {OFFICIAL_WEIGHTS}")
        return weights, args
    args = path.parent / OFFICIAL_ARGS
    return path, args if args.is_file() else None


def load_official_melgan(path: str | Path) -> MelGANGenerator:
    """The official MelGAN (a folder with `best_netG.pt` + `args.yml`, or the `.pt` file itself) as our
    generator, in eval mode. With `args.yml` present, its sizes must agree with the weights'."""
    weights_path, args_path = _official_files(Path(path))
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "model.1.weight_v" not in state:
        raise ValueError(
            f"{weights_path}: not an official MelGAN generator state dict (no 'model.1.weight_v')"
        )
    config = generator_config_from_state_dict(state)
    if args_path is not None:
        args = read_official_args(args_path)
        for ours, theirs in (("n_mels", "n_mel_channels"), ("ngf", "ngf"), ("n_residual_layers",) * 2):
            if theirs in args and int(args[theirs]) != config[ours]:
                raise ValueError(
                    f"{args_path}: {theirs}={args[theirs]} but {weights_path.name} holds a generator with "
                    f"{ours}={config[ours]}"
                )
    model = MelGANGenerator(**config)
    model.load_state_dict(convert_melgan_state_dict(state, model))
    log.info("%s: loaded %d official tensors into MelGANGenerator(%s)", weights_path, len(state), config)
    return model.eval()
