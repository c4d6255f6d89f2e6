import re
import shutil
import subprocess

import pytest

from shared.data import VGGSoundIndex
from shared.prepare import main as prepare_main
from shared.prepare import parse_shard
from shared.slurm import render


def test_sbatch_script_has_every_field_filled_and_is_valid_bash():
    script = render("specvqgan", "toy_codebook", nodes=2, gpus=8, version="v3", partition="a100", account="lab",
                    time="48:00:00", args="--trainer.max_steps=10")  # fmt: skip
    assert not re.search(r"@[A-Z_]+@", script)  # no field left unfilled
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=8", "#SBATCH --gres=gpu:8",
                 "#SBATCH --partition=a100", "#SBATCH --account=lab", "#SBATCH --requeue",
                 "#SBATCH --signal=SIGUSR1@90", "#SBATCH --job-name=avgen-specvqgan-toy_codebook-v3"):  # fmt: skip
        assert line in script
    assert "runs/specvqgan/toy_codebook/v3/slurm-%j.out" in script
    assert "--trainer.num_nodes=2 --trainer.devices=8" in script and "--run.version=v3" in script
    assert "--trainer.max_steps=10" in script
    assert subprocess.run(["bash", "-n"], input=script, text=True, timeout=60).returncode == 0


def test_sbatch_for_a_config_that_does_not_exist_names_it():
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        render("specvqgan", "nope")


def test_shards_split_the_clips_without_overlap_and_bad_clips_are_reported(
    toy_root, tmp_path, capsys, monkeypatch
):
    root = tmp_path / "vggsound"
    shutil.copytree(toy_root / "vggsound", root)
    bad = sorted((root / "video").glob("*.mp4"))[3]
    bad.write_bytes(b"not a video")  # a corrupt download
    cache = tmp_path / "cache"
    args = ["--dataset", "vggsound", "--root", str(root), "--cache-dir", str(cache), "--workers", "0",
            "--duration", "1"]  # fmt: skip
    for shard in ("0/2", "1/2"):
        prepare_main([*args, "--shard", shard])
    done = sorted(p.stem for p in cache.rglob("*.npy"))
    clips = sorted(r.clip_id for r in VGGSoundIndex(root).records())
    assert done == sorted(set(clips) - {bad.stem})  # every good clip once, from one shard or the other
    reports = [(cache / f"vggsound_skipped_shard-{i}-of-2.tsv").read_text().splitlines() for i in (0, 1)]
    bad_rows = [row for report in reports for row in report[1:]]
    assert len(bad_rows) == 1 and bad_rows[0].startswith(bad.stem) and str(bad) in bad_rows[0]
    assert "skipped 1 of" in capsys.readouterr().out
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "5")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    assert parse_shard(None) == (1, 3)  # an array job's tasks take the shards in turn
    with pytest.raises(ValueError, match="shard 3/3"):
        parse_shard("3/3")
