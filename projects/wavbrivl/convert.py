"""Loading BriVL's released checkpoint's image tower into `BriVLImageTower`.

The official checkpoint (`BriVL-1.0-5500w.pth` of `BAAI-WuDao/BriVL`; `brivl-with-roberta-base.pth` of
`neilfei/brivl-nmi`) is `{"learnable": VL_model.learnable.state_dict()}` (`evaluation/XYB_box_extract.py`,
`example.py`): the query and momentum copies of the image and text encoders. The image tower is the query
encoder `imgencoder` (the one the official feature extraction runs); WavBriVL cleared the text weights
(arXiv:2303.04585, sec. 3), so everything else is left out. Key mapping (official `ImgLearnableEncoder` names,
`models/vl_model.py`, on the left):

| official                              | ours                |
|---------------------------------------|---------------------|
| imgencoder.backbone.*                 | backbone.* (timm; its ImageNet `classifier.*` is dropped) |
| imgencoder.learnable.max_pool.0.*     | region_conv.*       |
| imgencoder.learnable.imgAtt.*         | transformer.*       |
| imgencoder.learnable.imgFC.fc1.*      | mlp.0.*             |
| imgencoder.learnable.imgFC.fc2.*      | mlp.2.*             |
"""

from __future__ import annotations

from pathlib import Path

import torch

from projects.wavbrivl.models.image_tower import BriVLImageTower, FrozenImageTower
from shared.runs import UserError

IMAGE_ENCODER = "imgencoder."
KEY_PREFIXES = {
    "backbone.": "backbone.",
    "learnable.max_pool.0.": "region_conv.",
    "learnable.imgAtt.": "transformer.",
    "learnable.imgFC.fc1.": "mlp.0.",
    "learnable.imgFC.fc2.": "mlp.2.",
}
DROPPED = ("backbone.classifier.",)


def official_image_tower_state(state: dict, path: str | Path) -> dict[str, torch.Tensor]:
    """The released checkpoint's `learnable` state dict -> `BriVLImageTower`'s keys (module docstring)."""
    if "learnable" in state:
        state = state["learnable"]
    converted = {}
    for key, value in state.items():
        if not key.startswith(IMAGE_ENCODER):
            continue  # momentum copy, text tower
        name = key[len(IMAGE_ENCODER) :]
        if name.startswith(DROPPED):
            continue
        prefix = next((p for p in KEY_PREFIXES if name.startswith(p)), None)
        if prefix is None:
            raise UserError(
                f"{path}: unexpected image-tower key {key!r} (not in BriVL's ImgLearnableEncoder)"
            )
        converted[KEY_PREFIXES[prefix] + name[len(prefix) :]] = value
    if not converted:
        raise UserError(
            f"{path}: no '{IMAGE_ENCODER}*' keys; not a BriVL checkpoint ({{'learnable': VL_model state}})"
        )
    return converted


def load_official_brivl_image_tower(path: str | Path, **tower_kwargs) -> FrozenImageTower:
    """A frozen `BriVLImageTower` (`FrozenImageTower`) with the weights of the official
    checkpoint at `path`. `tower_kwargs` describe the architecture (BriVL-1.0's by default: B5, 380 px;
    brivl-nmi evaluates at `image_size=456`). Missing or unexpected keys and shape mismatches raise a
    `UserError` naming the file and the keys."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: BriVL checkpoint not found")
    state = official_image_tower_state(torch.load(path, map_location="cpu", weights_only=True), path)
    tower = BriVLImageTower(**tower_kwargs)
    expected = tower.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise UserError(
            f"{path}: the image tower's keys do not match {tower_kwargs or 'the default'} architecture: "
            f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''} ({len(missing)}), "
            f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''} ({len(unexpected)})"
        )
    wrong = [
        f"{k}: {tuple(state[k].shape)} in the file, {tuple(v.shape)} here"
        for k, v in expected.items()
        if state[k].shape != v.shape
    ]
    if wrong:
        raise UserError(f"{path}: shape mismatch (a different architecture?): {'; '.join(wrong[:5])}")
    tower.load_state_dict(state)
    return FrozenImageTower(tower)
