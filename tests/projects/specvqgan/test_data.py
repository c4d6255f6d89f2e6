import numpy as np
import torch

from projects.specvqgan.data import SpectrogramDataModule
from shared.data import VASIndex
from shared.encoders import OfficialFeatureFiles, load_official_features


def test_official_features_of_real_vas_clips_reach_the_batch_cropped_and_resampled(demo_root, tmp_path):
    features = demo_root / "vas" / "features"
    visual = OfficialFeatureFiles(features, "{label}/feature_resnet50_dim2048_21.5fps/{name}.pkl")
    dm = SpectrogramDataModule(VASIndex(demo_root / "vas"), cache_dir=str(tmp_path), visual=visual, n_feats=5,
                               batch_size=2, shuffle=False)  # fmt: skip
    dm.prepare_data()
    batch = next(iter(dm.val_dataloader()))
    assert batch["mel"].shape == (2, 1, 80, 848) and batch["frame_feats"].shape == (2, 5, 2048)
    clip = batch["clip_id"][0]
    label, name = clip.split("/")
    raw = load_official_features(features / label / "feature_resnet50_dim2048_21.5fps" / f"{name}.pkl")
    # pad/trim to 215, centre crop to 212 (offset 1), frames [35, 77, 119, 162, 204] of the crop
    expected = np.stack([raw[1 + i] for i in (35, 77, 119, 162, 204)])
    assert torch.allclose(batch["frame_feats"][0], torch.from_numpy(expected))
