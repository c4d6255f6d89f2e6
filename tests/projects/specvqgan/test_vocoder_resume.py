"""An interrupted vocoder run resumes exactly: the random segments and gains are drawn at step time from
torch's global generator, which the checkpoint carries, so the resumed weights equal the uninterrupted ones."""

from pathlib import Path

import pytest
import torch

from projects.specvqgan.module_vocoder import MelGANVocoder
from shared.cli import AvgenCLI
from tests.conftest import REPO
from tests.shared.probes import probe, recorded_runs

CONFIG = REPO / "projects" / "specvqgan" / "configs" / "toy_vocoder.yaml"


def fit_args(toy_root: Path, tmp_path: Path, version: str, steps: int) -> list[str]:
    return [
        "fit", "--config", str(CONFIG),
        f"--data.init_args.dataset.init_args.root={toy_root / 'vggsound'}",
        f"--data.init_args.cache_dir={tmp_path / 'cache'}",
        f"--run.root={tmp_path / 'runs'}", f"--run.version={version}",
        f"--trainer.max_steps={steps}", "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        probe("StepRecorder", path=str(tmp_path / f"{version}_steps.txt")),
    ]  # fmt: skip


def weights(run: Path) -> tuple[int, dict]:
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    return ckpt["global_step"], ckpt["state_dict"]


@pytest.mark.slow
def test_an_interrupted_vocoder_run_resumes_exactly(toy_root, tmp_path, monkeypatch):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # bitwise-equal weights need the same reduction order in both runs
    try:
        straight = AvgenCLI(args=fit_args(toy_root, tmp_path, "straight", 5))

        def interrupt(self, outputs, batch, batch_idx):  # Ctrl-C after the third step
            if self.global_step == 3:
                raise KeyboardInterrupt

        with monkeypatch.context() as patch:
            patch.setattr(MelGANVocoder, "on_train_batch_end", interrupt, raising=False)
            with pytest.raises(SystemExit):
                AvgenCLI(args=fit_args(toy_root, tmp_path, "resumed", 5))
        run = tmp_path / "runs" / "specvqgan" / "toy_vocoder" / "resumed"
        assert weights(run)[0] == 3
        resumed = AvgenCLI(args=fit_args(toy_root, tmp_path, "resumed", 5))
    finally:
        torch.set_num_threads(threads)
    assert resumed.trainer.global_step == straight.trainer.global_step == 5
    [straight_steps] = recorded_runs(tmp_path / "straight_steps.txt")
    interrupted_steps, resumed_steps = recorded_runs(tmp_path / "resumed_steps.txt")
    assert straight_steps == interrupted_steps + resumed_steps
    assert resumed_steps[0] == 4, "it did not resume after the interrupted run's step 3"
    (_, expected), (_, got) = weights(straight.run_dir), weights(run)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected), "resumed weights differ"
