"""An independent model of the official VGGish-ish (`v-iashin/SpecVQGAN`,
`specvqgan/modules/losses/vggishish/model.py`, `VGGishish`), written from that file's structure: a
`conv_layers` list with 'MP' for max pooling, `features` / `avgpool` / `flatten` / `classifier` in the
official order and index layout, input [B, F, T] already standardised (the official dataset transform does
that).
The official class fixes the first FC's input at 512 x 5 x 10 and its width at 4096; here they follow the last
conv width and `fc_dim`, so the test can run it narrow. It is not used by the library.
"""

from __future__ import annotations

import torch
from torch import nn

PAPER_CONV_LAYERS = [64, 64, "MP", 128, 128, "MP", 256, 256, 256, "MP", 512, 512, 512, "MP", 512, 512, 512]


class VGGishish(nn.Module):
    def __init__(self, conv_layers, num_classes, fc_dim=4096):
        super().__init__()
        layers = []
        in_channels = 1
        for v in conv_layers:
            if v == "MP":
                layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
            else:
                layers += [
                    nn.Conv2d(in_channels, v, kernel_size=3, padding=1, stride=1),
                    nn.ReLU(inplace=True),
                ]
                in_channels = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((5, 10))
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(in_channels * 5 * 10, fc_dim),
            nn.ReLU(True),
            nn.Linear(fc_dim, fc_dim),
            nn.ReLU(True),
            nn.Linear(fc_dim, num_classes),
        )

    def forward(self, x):
        x = x.unsqueeze(1)
        x = self.features(x)
        x = self.avgpool(x)
        x = self.flatten(x)
        return self.classifier(x)


def randomize(module: nn.Module, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            std = (2.0 / p[0].numel()) ** 0.5 if p.dim() > 1 else 0.1  # He-scaled weights, small biases
            p.copy_(torch.randn(p.shape, generator=generator) * std)
    return module.eval()
