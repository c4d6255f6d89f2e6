"""Plain nn.Modules of AudioToken (arXiv:2305.13050), no Lightning inside."""
