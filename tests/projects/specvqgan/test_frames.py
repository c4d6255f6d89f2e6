"""The toy visual encoder stage (module_frames): a frame classifier whose trunk becomes the sampler's feature extractor."""

import numpy as np
import pytest
import torch

from shared.cli import AvgenCLI
from shared.data import VGGSoundIndex
from shared.encoders import ResNetFeature
from tests.projects.specvqgan.test_training import toy_args


@pytest.mark.slow
def test_frame_classifier_writes_a_trunk_that_the_feature_extractor_loads(toy_root, tmp_path):
    cli = AvgenCLI(args=[*toy_args("toy_frames.yaml", toy_root, tmp_path), "--trainer.max_steps=30",
                         "--trainer.val_check_interval=30", "--data.init_args.batch_size=12"])  # fmt: skip
    assert cli.trainer.global_step == 30
    batch = next(iter(cli.datamodule.train_dataloader()))
    assert batch["frames"].dtype == torch.uint8 and batch["frames"].shape[1] == 43  # 2 s at 21.5 fps, looped
    path = cli.run_dir / "frame_encoder.pt"
    state = torch.load(path, weights_only=True)
    assert not any(k.startswith("fc.") for k in state)
    assert torch.equal(state["conv1.weight"], cli.model.trunk.conv1.weight.detach())
    record = VGGSoundIndex(toy_root / "vggsound").records("test")[0]
    trained = ResNetFeature(arch="resnet18", weights=str(path), image_size=64, duration=2.0)
    random = ResNetFeature(arch="resnet18", weights=None, image_size=64, duration=2.0)
    feats = trained(record)
    assert feats.shape == (43, 512)
    assert not np.allclose(feats, random(record))
    assert trained.params()["weights"] != random.params()["weights"]  # a new feature cache
    # the trunk computes exactly what the classifier's trunk computes on the same frames
    frames = batch["frames"][0, :4]
    with torch.no_grad():
        expected = cli.model.trunk.eval()(cli.model.preprocessor.preprocess(frames))
    assert torch.allclose(trained.model.embed(frames), expected, atol=1e-4)
