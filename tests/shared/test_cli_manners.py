"""`avgen`'s manners: one help for every command, one-line user errors, imports on demand, and a
preparation pool that starts only when it pays."""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import shared.commands as commands
from shared.data.cache import FeatureCache, prepare_features
from shared.data.records import ClipRecord, SkipReport
from shared.media import MediaError
from shared.runs import UserError
from tests.conftest import REPO

HEAVY = [
    "lightning",
    "pytorch_lightning",
    "open_clip",
    "transformers",
    "torchvision",
    "torchmetrics",
    "diffusers",
]


def avgen(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m shared ...` (what the `avgen` script runs); killed if it outlives `timeout`."""
    return subprocess.run(
        [sys.executable, "-m", "shared", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def python(code: str, timeout: float = 120) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=True
    )
    return done.stdout


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("avgen: error:")]


# --- one help -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["--help"], ["-h"], []])
def test_help_lists_every_command_without_importing_torch(args):
    code = (
        "import sys\nfrom shared.commands import main\n"
        f"main({args!r})\nprint('IMPORTED', sorted(m for m in ['torch', *{HEAVY!r}] if m in sys.modules))"
    )
    out = python(code)
    for name in [
        "fit",
        "validate",
        "test",
        "predict",
        "pipeline",
        "prepare",
        "generate",
        "evaluate",
        "compare",
        "slurm",
        "demo",
    ]:
        assert any(line.split()[:1] == [name] for line in out.splitlines()), f"{name} missing:\n{out}"
    assert "IMPORTED []" in out


def test_an_unknown_command_is_one_error_listing_the_commands():
    done = avgen("frobnicate", timeout=60)
    assert done.returncode == 2
    assert error_lines(done.stderr) == [
        "avgen: error: unknown command 'frobnicate'; commands: "
        "fit, validate, test, predict, pipeline, prepare, generate, evaluate, compare, slurm, demo"
    ]


@pytest.mark.parametrize("command", ["pipeline", "prepare", "generate", "slurm"])
def test_each_command_has_its_own_help(command):
    done = avgen(command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: avgen {command}")


@pytest.mark.slow
def test_lightning_commands_help_without_the_args_warning():
    done = avgen("fit", "--help", timeout=300)
    assert done.returncode == 0, done.stderr
    assert "--config" in done.stdout and "--trainer" in done.stdout
    assert "args parameter is intended" not in done.stderr


@pytest.mark.parametrize("command", ["fit", "validate", "test", "predict"])
def test_the_lightning_commands_reach_the_lightning_cli_with_their_name(monkeypatch, command):
    seen = []
    fake = types.ModuleType("shared.cli")
    fake.AvgenCLI = lambda args: seen.append(args)
    monkeypatch.setitem(sys.modules, "shared.cli", fake)
    commands.main([command, "--config", "x.yaml"])
    assert seen == [[command, "--config", "x.yaml"]]


# --- projects that are not there (yet) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "project", "start"),
    [
        ("pipeline", "nope", "no project 'nope'"),
        ("generate", "nope", "no project 'nope'"),
    ],
)
def test_a_project_without_the_command_gets_one_line_listing_those_with_it(command, project, start):
    done = avgen(command, "--project", project, timeout=60)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    [line] = error_lines(done.stderr)
    with_it = sorted(p.parent.name for p in (REPO / "projects").glob(f"*/{command}.py"))
    assert with_it, "no project has the command: the listing below would prove nothing"
    assert line.startswith(f"avgen: error: {start.format(command=command)}")
    assert line.endswith(f"projects that have it: {', '.join(with_it)}")


@pytest.fixture
def fake_projects(tmp_path, monkeypatch) -> None:
    """A `projects` package in place of the real one, found as `shared.discovery` finds it (the imported
    package's search path): `finished` has both commands, `trainer_only` a pipeline, `half_done` neither, and
    `notes` has a pipeline.py but no __init__.py (not a project)."""
    root = tmp_path / "projects"
    layout = {
        "finished": ["__init__.py", "pipeline.py", "generate.py"],
        "trainer_only": ["__init__.py", "pipeline.py"],
        "half_done": ["__init__.py"],
        "notes": ["pipeline.py"],
    }
    for project, files in layout.items():
        (root / project).mkdir(parents=True)
        for name in files:
            (root / project / name).write_text("raise AssertionError('a project module was imported')\n")
    (root / "__init__.py").write_text("")
    spec = importlib.util.spec_from_file_location(
        "projects", root / "__init__.py", submodule_search_locations=[str(root)]
    )
    monkeypatch.setitem(sys.modules, "projects", importlib.util.module_from_spec(spec))
    monkeypatch.delenv("AVGEN_DEBUG", raising=False)


@pytest.mark.parametrize(
    ("command", "project", "line"),
    [
        ("pipeline", "half_done",
         "project 'half_done' has no `avgen pipeline` yet; projects that have it: finished, trainer_only"),
        ("generate", "trainer_only",
         "project 'trainer_only' has no `avgen generate` yet; projects that have it: finished"),
        ("generate", "half_done", "project 'half_done' has no `avgen generate` yet; projects that have it: finished"),
        ("pipeline", "notes", "no project 'notes' (for `avgen pipeline`); projects that have it: finished, trainer_only"),
    ],
)  # fmt: skip
def test_a_project_that_has_not_the_command_yet_is_told_so_in_one_line(
    fake_projects, capsys, command, project, line
):
    with pytest.raises(SystemExit) as exit_info:
        commands.main([command, "--project", project])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"avgen: error: {line}\n"


# --- user errors: one line, status 2; bugs and --debug: the traceback ---------------------------------------


def test_a_missing_dataset_folder_is_one_line():
    missing = REPO / "no-such-dataset-folder"
    done = avgen("prepare", "--dataset", "vas", "--root", str(missing), timeout=300)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    [line] = error_lines(done.stderr)
    assert str(missing) in line and line == done.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback(how):
    args = (
        ["--debug", "pipeline", "--project", "nope"] if how == "flag" else ["pipeline", "--project", "nope"]
    )
    done = avgen(*args, env={"AVGEN_DEBUG": "1"} if how == "env" else None, timeout=60)
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "UserError: no project 'nope'" in done.stderr
    assert not error_lines(done.stderr)


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (UserError("no checkpoint in runs/x/y/default: train it with `make train PROJECT=x`"),
         "no checkpoint in runs/x/y/default: train it with `make train PROJECT=x`"),
        (MediaError("clip.txt", "cannot be opened as a media file"), "clip.txt: cannot be opened as a media file"),
        (FileNotFoundError("clip.mp4: no such file"), "clip.mp4: no such file"),
        (FileNotFoundError(2, "No such file or directory", "runs/x/config.yaml"),
         "runs/x/config.yaml: No such file or directory"),
        (UserError("two\nlines"), "two lines"),
    ],
)  # fmt: skip
def test_user_errors_are_one_line_with_status_2(monkeypatch, capsys, error, line):
    def fail(args):
        raise error

    monkeypatch.setitem(commands.COMMANDS, "slurm", ("", fail))
    with pytest.raises(SystemExit) as exit_info:
        commands.main(["slurm"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"avgen: error: {line}\n"


def test_programming_errors_keep_their_traceback(monkeypatch):
    def fail(args):
        raise KeyError("a bug")

    monkeypatch.setitem(commands.COMMANDS, "slurm", ("", fail))
    with pytest.raises(KeyError, match="a bug"):
        commands.main(["slurm"])


@pytest.mark.slow
def test_generate_from_a_run_without_checkpoint_is_one_line(tmp_path):
    run = tmp_path / "runs" / "specvqgan" / "toy_sampler" / "default"
    run.mkdir(parents=True)
    args = ["--video", str(tmp_path / "clip.mp4"), "--out", str(tmp_path / "out.mp4"), "--run", str(run)]
    done = avgen("generate", "--project", "specvqgan", *args, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    [line] = error_lines(done.stderr)
    assert str(run) in line


# --- imports on demand ----------------------------------------------------------------------------------


def test_the_entry_point_and_prepare_import_no_lightning_clip_or_transformers():
    code = (
        "import json, sys\n"
        "import shared.commands, shared.prepare, shared.data, shared.encoders, shared.metrics, shared.pipeline\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    assert json.loads(python(code, timeout=300)) == []


def test_lazy_packages_keep_their_public_names():
    code = (
        "import shared.data, shared.encoders, shared.metrics\n"
        "for package in (shared.data, shared.encoders, shared.metrics):\n"
        "    assert set(package.__all__) <= set(dir(package)), package\n"
        "    try:\n"
        "        package.NoSuchName\n"
        "        raise SystemExit(f'{package.__name__}.NoSuchName exists')\n"
        "    except AttributeError:\n"
        "        pass\n"
        # a submodule imported first must not hide the function of its name, as an eager package would not
        "import shared.metrics.melception\n"
        "from shared.metrics import inception_score, InceptionScore\n"
        "from shared.metrics.inception_score import inception_score as function\n"
        "assert inception_score is function and InceptionScore.__module__ == 'shared.metrics.inception_score'\n"
        "from shared.encoders import ResNetFeature\n"
        "from shared.encoders.resnet import ResNetFeature as direct\n"
        "assert ResNetFeature is direct\n"
        "print('ok')"
    )
    assert python(code, timeout=300).strip() == "ok"


# --- the preparation pool ---------------------------------------------------------------------------------


class AfterAWorker:
    """`feature`, except that in the process that prepares, every clip after the first waits (at most a
    minute) until a worker has computed one: a test that asks for workers sees them compute."""

    def __init__(self, feature, worker_marker: Path):
        self.feature, self.worker_marker = feature, worker_marker
        self.threads = getattr(feature, "threads", None)
        self.main_pid, self.calls = os.getpid(), 0

    def params(self) -> dict:
        return self.feature.params()

    def __call__(self, record: ClipRecord) -> np.ndarray:
        if os.getpid() != self.main_pid:
            self.worker_marker.touch()
        elif self.calls:
            deadline = time.monotonic() + 60
            while not self.worker_marker.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        self.calls += 1
        return self.feature(record)


class ProcessRecorder:
    """A feature that records which process computed it and with how many torch threads."""

    threads = 1

    def params(self) -> dict:
        return {}

    def __call__(self, record: ClipRecord) -> np.ndarray:
        if not record.path.is_file():
            raise FileNotFoundError(f"{record.path}: no such file")
        return np.array([os.getpid(), torch.get_num_threads()])


def clip_records(folder: Path, count: int) -> list[ClipRecord]:
    folder.mkdir()
    records = []
    for i in range(count):
        (folder / f"c{i}.wav").touch()
        records.append(ClipRecord(folder / f"c{i}.wav", "x", 0, "train", f"c{i}"))
    return records


def test_a_short_job_starts_no_worker_and_uses_the_features_thread_count(tmp_path):
    records = clip_records(tmp_path / "clips", 6)
    cache = FeatureCache(tmp_path / "cache", "pids", {})
    threads_before = torch.get_num_threads()
    kept = prepare_features(records, cache, ProcessRecorder(), SkipReport("t"), workers=3)
    assert len(kept) == 6
    computed = np.stack([cache.load(r.clip_id) for r in records])
    assert set(computed[:, 0]) == {os.getpid()}  # seconds of work would be needed to start a worker
    assert set(computed[:, 1]) == {1}
    assert torch.get_num_threads() == threads_before
    assert not multiprocessing.active_children()


@pytest.mark.slow
def test_workers_share_the_clips_report_failures_and_are_gone_after(tmp_path, monkeypatch):
    import shared.data.cache

    monkeypatch.setattr(shared.data.cache, "WORKER_START_S", 0.0)  # start the pool after the first clip
    records = clip_records(tmp_path / "clips", 12)
    records.insert(5, ClipRecord(tmp_path / "gone.wav", "x", 0, "train", "gone"))
    cache = FeatureCache(tmp_path / "cache", "pids", {})
    report = SkipReport("t")
    feature = AfterAWorker(ProcessRecorder(), tmp_path / "worker_ran")
    kept = prepare_features(records, cache, feature, report, workers=2)
    assert [r.clip_id for r in kept] == [r.clip_id for r in records if r.clip_id != "gone"]
    assert [row[0] for row in report.rows] == ["gone"] and "no such file" in report.rows[0][2]
    computed = np.stack([cache.load(r.clip_id) for r in kept])
    assert os.getpid() in computed[:, 0] and len(set(computed[:, 0])) >= 2
    assert set(computed[:, 1]) == {1}  # the feature's thread count, in the workers too
    assert sorted(p.name for p in cache.dir.iterdir()) == sorted(
        ["params.json", *(f"{r.clip_id}.npy" for r in kept)]
    )
    assert not multiprocessing.active_children()


@pytest.mark.slow
def test_workers_compute_the_mels_this_process_computes(toy_root, tmp_path, monkeypatch):
    import shared.data.cache
    from shared.data.features import MelFeature
    from shared.data.indexes import VGGSoundIndex

    records = VGGSoundIndex(toy_root / "vggsound").records("train")[:10]
    feature = MelFeature("specvqgan", duration=2.0, loop=True)
    alone = FeatureCache(tmp_path / "alone", "mel", feature.params())
    prepare_features(records, alone, feature, SkipReport("toy"))
    monkeypatch.setattr(shared.data.cache, "WORKER_START_S", 0.0)
    pooled = FeatureCache(tmp_path / "pooled", "mel", feature.params())
    marker = tmp_path / "worker_ran"
    assert len(prepare_features(records, pooled, AfterAWorker(feature, marker), SkipReport("toy"), 2)) == 10
    assert marker.exists()  # a worker computed at least one of them
    for record in records:
        assert np.array_equal(pooled.load(record.clip_id), alone.load(record.clip_id)), record.clip_id


# --- decoding for preparation -------------------------------------------------------------------------------


def test_opening_a_clip_for_its_audio_only_decodes_the_same_samples(demo_root, monkeypatch):
    import shared.audio.io as audio_io
    import shared.media

    clip = demo_root / "vas" / "videos" / "gun" / "video_00819.mp4"  # 720p: its probe decodes video frames
    fast = audio_io.decode_audio(clip)
    monkeypatch.setattr(audio_io, "open_media", lambda path, audio_only=False: shared.media.open_media(path))
    probed = audio_io.decode_audio(clip)
    assert fast[1:] == probed[1:] and np.array_equal(fast[0], probed[0])


@pytest.mark.parametrize("rates", [(44100, 22050), (48000, 22050), (48000, 16000), (32000, 16000)])
def test_the_cached_resampler_gives_the_samples_of_torchaudio_functional(rates):
    import torchaudio.functional

    from shared.audio.io import _resampler

    wave = torch.randn(rates[0], generator=torch.Generator().manual_seed(0))
    assert torch.equal(_resampler(*rates)(wave), torchaudio.functional.resample(wave, *rates))
