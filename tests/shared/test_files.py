"""Atomic writes (`shared.files`) and the prediction writer built on them (`shared.callbacks.predictions`)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import shared.callbacks.predictions as predictions
from shared.callbacks import ClipPredictionWriter
from shared.files import atomic_path, remove_stale_temporaries


def hidden(folder) -> list:
    return sorted(p.name for p in folder.rglob(".*"))


def left_by_a_kill(path) -> str:
    """The temporary file `atomic_path` makes for `path`, as a kill -9 in the middle of the write leaves it."""
    with atomic_path(path) as tmp:
        name = tmp.name
    path.unlink()
    (path.parent / name).write_bytes(b"\x93NUMPY half")
    return name


def test_an_atomic_write_leaves_the_final_file_or_nothing(tmp_path):
    with atomic_path(tmp_path / "a.npy") as tmp:
        np.save(tmp, np.arange(3))
    assert np.array_equal(np.load(tmp_path / "a.npy"), np.arange(3))
    with pytest.raises(OSError), atomic_path(tmp_path / "b.npy") as tmp:
        tmp.write_bytes(b"half")
        raise OSError("disk full")
    assert not (tmp_path / "b.npy").exists()
    assert hidden(tmp_path) == []


def test_stale_temporaries_of_the_named_files_are_removed_and_only_those(tmp_path):
    mine = [left_by_a_kill(tmp_path / f"{stem}.npy") for stem in ("clip_1", "clip.2")]
    others = [left_by_a_kill(tmp_path / "clip_3.npy"), left_by_a_kill(tmp_path / "params.json")]
    (tmp_path / "clip_1.npy").write_bytes(b"done")  # a finished file is never touched
    assert len(set(mine + others)) == 4 and all(name.startswith(".") for name in mine + others)
    assert remove_stale_temporaries(tmp_path, {"clip_1", "clip.2", "clip_9"}) == 2
    assert hidden(tmp_path) == sorted(others)
    assert (tmp_path / "clip_1.npy").read_bytes() == b"done"


def write(writer: ClipPredictionWriter, root, prediction: dict) -> None:
    trainer = SimpleNamespace(default_root_dir=str(root))
    writer.write_on_batch_end(trainer, None, prediction, None, None, 0)


def test_predictions_go_to_one_file_per_clip_and_output(tmp_path):
    mel, codes = torch.rand(2, 3, 4), torch.randint(0, 9, (2, 5))
    write(ClipPredictionWriter(), tmp_path, {"clip_id": ["a", "b"], "mel": mel, "codes": codes, "note": "x"})
    folder = tmp_path / "predictions"
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == [
        "codes", "codes/a.npy", "codes/b.npy", "mel", "mel/a.npy", "mel/b.npy",
    ]  # fmt: skip
    for key, values in (("mel", mel), ("codes", codes)):
        for i, clip in enumerate("ab"):
            assert np.array_equal(np.load(folder / key / f"{clip}.npy"), values[i].numpy())
    # a re-run skips what is there, unless told not to; output_dir moves the folder
    write(ClipPredictionWriter(), tmp_path, {"clip_id": ["a"], "mel": torch.zeros(1, 3, 4)})
    assert np.array_equal(np.load(folder / "mel" / "a.npy"), mel[0].numpy())
    write(
        ClipPredictionWriter(skip_existing=False), tmp_path, {"clip_id": ["a"], "mel": torch.zeros(1, 3, 4)}
    )
    assert not np.load(folder / "mel" / "a.npy").any()
    write(ClipPredictionWriter(str(tmp_path / "elsewhere")), tmp_path, {"clip_id": ["c"], "mel": mel[:1]})
    assert (tmp_path / "elsewhere" / "mel" / "c.npy").is_file()
    assert hidden(tmp_path) == []


def test_a_failed_prediction_write_leaves_no_file(tmp_path, monkeypatch):
    def save_half_then_fail(file, array):
        file.write(b"\x93NUMPY half")
        raise OSError("disk full")

    monkeypatch.setattr(predictions.np, "save", save_half_then_fail)
    with pytest.raises(OSError):
        write(ClipPredictionWriter(), tmp_path, {"clip_id": ["a"], "mel": torch.rand(1, 3)})
    assert list((tmp_path / "predictions").rglob("*")) == [tmp_path / "predictions" / "mel"]
