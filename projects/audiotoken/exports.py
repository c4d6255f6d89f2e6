"""The toy stand-in stages' exports: a trained part written in its library's own folder layout.

The toy CLIP, VAE and Stable Diffusion stages stand in for downloaded models, so later stages must load them
exactly as they would load the real ones (`CLIPModel.from_pretrained`, `load_stable_diffusion`). Each such
LightningModule writes its part into `<run>/<export_name>/` (or `export_dir`) every time a checkpoint is saved,
so the folder always holds the weights of the latest checkpoint (at the end of training, the final ones).
"""

from __future__ import annotations

from pathlib import Path

from shared.files import atomic_folder


class ExportsOnCheckpoint:
    """Mixin for a LightningModule with an `export_dir` hyper-parameter and `export_name`; `write_export(folder)`
    writes the part into an empty folder (atomically replaced by `export`)."""

    export_name: str

    def export_folder(self) -> Path:
        return Path(self.hparams.export_dir or Path(self.trainer.default_root_dir) / self.export_name)

    def write_export(self, folder: Path) -> None:
        raise NotImplementedError

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.trainer.is_global_zero:
            with atomic_folder(self.export_folder()) as tmp:
                self.write_export(Path(tmp))
