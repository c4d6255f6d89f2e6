"""Toy frames in memory for the SD-stage tests: the event frames of synthesized toy clips, as the AudioToken
DataModule's batches carry them (`image` [B, 3, 40, 64] in [-1, 1], `label`, `label_text`, `caption`)."""

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from shared.data.toy import TOY_CLASSES, event_frames, synthesize_clip


class ToyFrames(Dataset):
    def __init__(self, clips_per_class: int, first_index: int = 0, size: tuple[int, int] = (40, 64)):
        self.items = []
        for label in range(len(TOY_CLASSES)):
            for k in range(clips_per_class):
                clip, _, frames = synthesize_clip(first_index + label * clips_per_class + k, label, "train")
                for frame in event_frames(clip.onsets)[:2]:
                    rgb = torch.from_numpy(frames[min(frame, len(frames) - 1)]).permute(2, 0, 1).float()
                    image = F.interpolate(rgb[None], size=size, mode="bilinear", antialias=True)[0]
                    self.items.append((image / 127.5 - 1, label))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        image, label = self.items[i]
        text = TOY_CLASSES[label].label
        return {"image": image, "label": label, "label_text": text, "caption": f"a photo of a {text}"}


def loader(dataset: Dataset, batch_size: int = 8, shuffle: bool = True) -> DataLoader:
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, generator=torch.Generator().manual_seed(0)
    )
