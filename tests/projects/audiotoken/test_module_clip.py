"""The toy CLIP stage: class-prompt targets, learning on toy frames, the exported folder."""

import pytest
import torch
from lightning.pytorch import Trainer

from projects.audiotoken.models.toy_clip import load_clip, text_encoder_from_clip, zero_shot_logits
from projects.audiotoken.module_clip import ToyCLIPTraining, class_targets
from shared.encoders.clip_tokenizer import clip_tokenizer
from tests.projects.audiotoken.toy_frames import ToyFrames, loader


def test_class_targets_follow_class_names_and_reject_unknown_labels():
    assert class_targets(["b", "a", "b"], ["a", "b"]).tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="'z'"):
        class_targets(["z"], ["a", "b"])


def test_text_encoder_from_clip_is_the_text_tower():
    module = ToyCLIPTraining()
    encoder = text_encoder_from_clip(module.model)
    ids = module.prompt_ids[:2]
    with torch.no_grad():
        torch.testing.assert_close(
            encoder(ids).last_hidden_state, module.model.text_model(ids).last_hidden_state, rtol=0, atol=0
        )


@pytest.mark.slow
def test_toy_clip_learns_zero_shot_classes_and_exports(tmp_path):
    torch.manual_seed(0)
    train, valid = ToyFrames(6), ToyFrames(2, first_index=500)
    module = ToyCLIPTraining()
    trainer = Trainer(
        max_epochs=4, accelerator="cpu", default_root_dir=tmp_path, logger=False, enable_progress_bar=False
    )
    trainer.fit(module, loader(train), loader(valid, shuffle=False))
    accuracy = trainer.callback_metrics["val/zero_shot_acc"].item()
    chance = 1 / len(module.class_names)
    assert accuracy > 0.8, (accuracy, chance)
    clip = load_clip(tmp_path / "clip")
    batch = next(iter(loader(valid, shuffle=False)))
    prompts = [f"a photo of a {name}" for name in module.class_names]
    exported = zero_shot_logits(clip, clip_tokenizer(), batch["image"], prompts)
    with torch.no_grad():
        torch.testing.assert_close(exported, module.eval().logits(batch["image"]), rtol=1e-5, atol=1e-5)
