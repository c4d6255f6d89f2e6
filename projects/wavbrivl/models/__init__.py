"""Plain nn.Modules of WavBriVL (no Lightning inside)."""
