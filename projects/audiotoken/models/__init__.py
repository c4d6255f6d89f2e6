"""AudioToken's plain nn.Modules (no Lightning inside)."""
