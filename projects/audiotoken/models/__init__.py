"""Plain nn.Modules of AudioToken and its Stable Diffusion parts (no Lightning inside)."""
