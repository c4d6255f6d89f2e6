"""`avgen generate --run <run> --input <file or folder> --out <folder>`: one door to the five directions.

    avgen generate --run runs/specvqgan/toy_sampler/default --input clips/ --out generated/
    avgen generate --run runs/audiotoken/toy_audiotoken/default --input dog.wav --out images/ --samples 4
    avgen generate --run runs/gravo/toy_low_gravo/default --help     # the project's own options too

The project is read from the run (`project_of_run`), its `projects/<p>/generate.py` builds a `RunGenerator` once
(`load_generator(run, device, **options)`, the models loaded once), and the inputs go through it in batches of
`--batch-size` (where the project's model batches inputs; the others take them one by one). A folder's files
are taken in sorted order; files of a kind the project does not take are skipped and reported. For each input
and sample, the outputs are written to `--out` as `<input stem>[_<sample>].<ext>` (video -> audio: the video
with its new sound `.mp4`, the sound `.wav`, its spectrogram `.png`; image -> audio: `.wav` + `.png`;
audio -> image: `.png`) and a JSON sidecar `<input stem>[_<sample>].json`: the run, its checkpoint, the
project, the direction, the settings, the seed and sample index, the input, the files and avgen's git commit.

Every input is generated from the same `--seed`, and its samples from random streams keyed by the sample (and,
where the project keys them so, the input's name): an input's outputs do not depend on the other files of the
folder nor on the batch size.

`avgen generate --project <p> ...` is the per-project command of before (`projects/<p>/generate.py`'s `main`),
kept for what the door does not do: official checkpoints without a run folder, one output file named freely.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from shared.runs import UserError, project_of, run_config

# file suffixes of each kind of input (what PyAV, soundfile and PIL read)
KINDS = {
    "video": (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".flv", ".mpg", ".mpeg", ".3gp"),
    "audio": (".wav", ".flac", ".mp3", ".ogg", ".oga", ".m4a", ".aac", ".opus"),
    "image": (".png", ".jpg", ".jpeg", ".bmp", ".webp"),
}


def kind_of(path: str | Path) -> str | None:
    """ "video", "audio" or "image" by the file's suffix; None for anything else."""
    suffix = Path(path).suffix.lower()
    return next((kind for kind, suffixes in KINDS.items() if suffix in suffixes), None)


@dataclass(frozen=True)
class GeneratedItem:
    """One output set: what `sample` of `input` made, e.g. {"video": x.mp4, "audio": x.wav, "spectrogram":
    x.png} or {"image": x.png}, and the JSON sidecar that says how."""

    input: Path
    sample: int
    files: dict[str, Path]
    sidecar: Path


class RunGenerator(Protocol):
    """What `projects/<p>/generate.py`'s `load_generator(run, device, **options)` returns."""

    project: str
    direction: str  # "video->audio" | "image->audio" | "audio->image"
    inputs: tuple[str, ...]  # the kinds of input it takes: ("video",), ("video", "image"), ("audio", "video")

    def settings(self) -> dict:
        """The settings outputs are made with (JSON-able), for the sidecars."""

    def generate(
        self, inputs: Sequence[Path], out_dir: Path, samples: int = 1, seed: int = 0
    ) -> list[GeneratedItem]:
        """Every sample of every input written to `out_dir`, one `GeneratedItem` each (input-major)."""


def check_device(device: str) -> str:
    """`device` as given; a UserError when it names CUDA on a machine without it (every project's loader
    checks it before building anything)."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA device on this machine")
    return device


def check_stage(run: str | Path, classes: Sequence[str], stage: str) -> None:
    """A UserError when a run's config names a model other than `classes` (a run of another stage of the
    project, e.g. its codebook or VAE, given where the generating stage's run is needed)."""
    model = run_config(run).get("model") or {}
    class_path = model.get("class_path") if isinstance(model, dict) else None
    if class_path and class_path.rsplit(".", 1)[-1] not in classes:
        raise UserError(f"{run}: a run of {class_path}; generating needs {stage}")


def passes(check: Callable[[Path], None], run: Path) -> bool:
    """Whether `check(run)` raises no UserError: a project's `opens_run` (which runs the demo offers) from the
    check of a run's stage its `load_generator` makes, reading the run's config.yaml and loading no model."""
    try:
        check(run)
    except UserError:
        return False
    return True


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Generator:
    """The door's half of every project's `RunGenerator`: input checks, output names, batches, progress, sidecars.

    A project subclasses it, sets `project`, `direction` and `inputs`, and writes `write(inputs, stems, seed)`:
    the outputs of each input's samples to the stems given (no suffix), returned as one files dict per sample.
    Its per-project `main(argv)` calls the same `write` with the stems of its `--out`.
    """

    project: str
    direction: str
    inputs: tuple[str, ...]

    def __init__(self, run: Path | None, checkpoint: Path | None, batch_size: int = 1):
        if batch_size < 1:
            raise UserError(f"--batch-size {batch_size}: must be at least 1")
        self.run, self.checkpoint, self.batch_size = run, checkpoint, batch_size

    def settings(self) -> dict:
        raise NotImplementedError

    def write(self, inputs: list[Path], stems: list[list[Path]], seed: int) -> list[list[dict[str, Path]]]:
        """For each input, for each of its stems (one per sample), the files written there."""
        raise NotImplementedError

    def write_files(
        self, inputs: list[Path], stems: list[list[Path]], seed: int
    ) -> list[list[dict[str, Path]]]:
        """`write`, with a media file it cannot use (no audio track, corrupt) reported as the user's to fix."""
        from shared.media import MediaError

        try:
            return self.write(inputs, stems, seed)
        except MediaError as error:
            raise UserError(str(error)) from error

    def direction_of(self, kind: str) -> str:
        """The direction of an input of `kind`: an image given to a video -> audio system is image -> audio."""
        return f"{kind}->audio" if self.direction.endswith("->audio") else self.direction

    def generate(
        self, inputs: Sequence[Path], out_dir: Path, samples: int = 1, seed: int = 0
    ) -> list[GeneratedItem]:
        """Every input checked first, then `batch_size` inputs per `write`, a sidecar per sample, a progress
        bar over the inputs (tqdm, which gradio's `track_tqdm` follows)."""
        from tqdm import tqdm

        inputs = [Path(path) for path in inputs]
        for path in inputs:
            self.check_input(path)
        if samples < 1:
            raise UserError(f"--samples {samples}: must be at least 1")
        out_dir = Path(out_dir)
        check_out_dir(out_dir, inputs)
        out_dir.mkdir(parents=True, exist_ok=True)
        stems = output_stems(inputs, out_dir, samples)
        items = []
        with tqdm(total=len(inputs), unit="input", desc=f"generate ({self.project})") as progress:
            for start in range(0, len(inputs), self.batch_size):
                batch = slice(start, start + self.batch_size)
                written = self.write_files(inputs[batch], stems[batch], seed)
                for path, files_of_samples in zip(inputs[batch], written, strict=True):
                    items += [
                        self.record(path, sample, samples, seed, files)
                        for sample, files in enumerate(files_of_samples)
                    ]
                progress.update(len(inputs[batch]))
        return items

    def check_input(self, path: Path) -> None:
        """A UserError naming `path` when it is missing, of a kind this project does not take, or a video
        without sound given to a project that generates from sound (found before any input is generated)."""
        if not path.is_file():
            raise UserError(f"{path}: no such file")
        kind = kind_of(path)
        if kind not in self.inputs:
            raise UserError(f"{path}: {described(kind)}; {self.project} takes {accepted(self.inputs)}")
        if kind == "video" and self.direction.startswith("audio->"):
            from shared.media import MediaError, open_media

            try:
                with open_media(path, audio_only=True) as container:
                    has_sound = bool(container.streams.audio)
            except MediaError as error:
                raise UserError(str(error)) from error
            if not has_sound:
                raise UserError(
                    f"{path}: has no audio stream; {self.project} makes an image from a video's sound"
                )

    def record(
        self, path: Path, sample: int, samples: int, seed: int, files: dict[str, Path]
    ) -> GeneratedItem:
        """The item of one sample, its sidecar written beside its files."""
        sidecar = next(iter(files.values())).with_suffix(".json")
        content = {
            "run": str(self.run.resolve()) if self.run else None,
            "checkpoint": str(self.checkpoint.resolve()) if self.checkpoint else None,
            "project": self.project,
            "direction": self.direction_of(kind_of(path)),
            "settings": absolute_paths(self.settings()),
            "seed": seed,
            "sample": sample,
            "samples": samples,
            "input": str(path.resolve()),
            "files": {name: file.name for name, file in files.items()},
            "avgen_commit": avgen_commit(),
        }
        sidecar.write_text(json.dumps(content, indent=2, default=str) + "\n")
        return GeneratedItem(path, sample, dict(files), sidecar)


def save_sound(source: Path, stem: Path, wave, rate: int, picture) -> dict[str, Path]:
    """The files of one sound made for `source`: `<stem>.wav`, its spectrogram picture `<stem>.png` and, for a
    video, `<stem>.mp4`, the video with the sound as its audio track."""
    from shared.audio import save_audio, save_mel_picture
    from shared.video import mux_audio

    stem.parent.mkdir(parents=True, exist_ok=True)
    files = {
        "audio": save_audio(stem.with_suffix(".wav"), wave, rate),
        "spectrogram": save_mel_picture(picture, stem.with_suffix(".png")),
    }
    if kind_of(source) == "video":
        files["video"] = mux_audio(source, wave, rate, stem.with_suffix(".mp4"))
    return files


def absolute_paths(settings):
    """`settings` with every relative path that names an existing file or folder made absolute: a sidecar must
    still name the vocoder, VQGAN or weights it was made with when read from another folder."""
    if isinstance(settings, dict):
        return {name: absolute_paths(value) for name, value in settings.items()}
    is_path = isinstance(settings, (str, Path)) and str(settings) and not Path(settings).is_absolute()
    return os.path.abspath(settings) if is_path and Path(settings).exists() else settings


def described(kind: str | None) -> str:
    return {"audio": "an audio file", "image": "an image file", "video": "a video file"}.get(
        kind, "not a file of a known kind"
    )


def generate_to(generator: Generator, source: Path, out: Path, samples: int = 1, seed: int = 0) -> list[Path]:
    """The per-project commands' path (`avgen generate --project <p>`): one input's samples at the stem of
    `out` (`<stem>.*` for one sample, `<stem>_<i>.*` for several), no sidecar; every file written, printed."""
    if not Path(source).is_file():
        raise UserError(f"{source}: no such file")
    if samples < 1:
        raise UserError(f"--samples {samples}: must be at least 1")
    stem = Path(out).with_suffix("")
    stems = [stem] if samples == 1 else [stem.with_name(f"{stem.name}_{i}") for i in range(samples)]
    written = [
        path for files in generator.write_files([Path(source)], [stems], seed)[0] for path in files.values()
    ]
    for path in written:
        print(path)
    return written


def accepted(kinds: Sequence[str]) -> str:
    return "; ".join(f"{kind} ({' '.join(KINDS[kind])})" for kind in kinds)


def check_out_dir(out_dir: Path, inputs: Sequence[Path]) -> None:
    """Outputs share their inputs' stems: in an input's own folder they could overwrite it."""
    for path in inputs:
        if path.parent.resolve() == out_dir.resolve():
            raise UserError(f"--out {out_dir}: the folder of the input {path}; give another folder")


def output_stems(inputs: Sequence[Path], out_dir: Path, samples: int) -> list[list[Path]]:
    """`out_dir/<stem>` for one sample, `out_dir/<stem>_<i>` for several; inputs whose stems collide (a.mp4,
    a.mkv) keep their suffix in the name (a_mp4, a_mkv)."""
    counts: dict[str, int] = {}
    for path in inputs:
        counts[path.stem] = counts.get(path.stem, 0) + 1
    names = [path.stem if counts[path.stem] == 1 else path.name.replace(".", "_") for path in inputs]
    if len(set(names)) < len(names):
        repeated = sorted({str(p) for p, n in zip(inputs, names, strict=True) if names.count(n) > 1})
        raise UserError(f"inputs with the same name: {', '.join(repeated)}")
    if samples == 1:
        return [[out_dir / name] for name in names]
    return [[out_dir / f"{name}_{i}" for i in range(samples)] for name in names]


@functools.cache
def avgen_commit() -> str | None:
    """The git commit of the avgen checkout this code runs from (with "-dirty" for local changes), if any."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return commit.stdout.strip() + ("-dirty" if status.stdout.strip() else "")


def collect_inputs(source: str | Path, kinds: Sequence[str]) -> tuple[list[Path], list[Path]]:
    """(inputs, skipped): a file of an accepted kind, or a folder's files of those kinds in sorted order and
    the others it holds. A UserError for a missing path, a file of another kind, or a folder with none."""
    source = Path(source)
    if source.is_file():
        if kind_of(source) not in kinds:
            raise UserError(f"{source}: {described(kind_of(source))}; this run takes {accepted(kinds)}")
        return [source], []
    if not source.is_dir():
        raise UserError(f"{source}: no such file or folder")
    files = sorted(path for path in source.iterdir() if path.is_file() and not path.name.startswith("."))
    inputs = [path for path in files if kind_of(path) in kinds]
    if not inputs:
        raise UserError(f"{source}: no input in this folder; this run takes {accepted(kinds)}")
    return inputs, [path for path in files if kind_of(path) not in kinds]


def project_of_run(run: str | Path) -> str:
    """The project of a run folder: the `projects.<p>.` class paths of its config.yaml, else its place in
    `runs/<project>/<experiment>/<version>`. A UserError for a folder that is no run or no project's."""
    from shared.discovery import projects_with

    run = Path(run)
    if not run.is_dir():
        raise UserError(f"{run}: no such run folder")
    if not (run / "config.yaml").is_file() and not (run / "checkpoints").is_dir():
        raise UserError(
            f"{run}: not a run folder (no config.yaml, no checkpoints/); give a folder `avgen fit` wrote, "
            "runs/<project>/<experiment>/<version>"
        )
    known = projects_with("generate")
    named = set()
    if (run / "config.yaml").is_file():
        named = {name for name in _project_names(run_config(run)) if name in known}
    if len(named) == 1:
        return named.pop()
    as_given = Path(os.path.abspath(run)).parts  # a linked run folder's place is the link's
    for by_place in (as_given[-3] if len(as_given) >= 3 else None, project_of(run)):
        if by_place in known:
            return by_place
    raise UserError(
        f"{run}: cannot tell which project made this run (its config.yaml names no projects.<name> class and "
        f"the folder is not runs/<project>/<experiment>/<version>); projects: {', '.join(known)}"
    )


def _project_names(config) -> Iterator[str]:
    """The <name> of every `projects.<name>.` string in a config."""
    if isinstance(config, dict):
        for value in config.values():
            yield from _project_names(value)
    elif isinstance(config, list):
        for value in config:
            yield from _project_names(value)
    elif isinstance(config, str) and config.startswith("projects."):
        yield config.split(".")[1]


def open_run(run: str | Path, device: str = "cpu", **options) -> RunGenerator:
    """The `RunGenerator` of a run folder, its models loaded on `device` once; `options` are the project's
    (`batch_size`, and those its `add_options` declares, by their argparse dest)."""
    from shared.discovery import project_module

    project = project_of_run(run)
    return project_module(project, "generate").load_generator(Path(run), device, **options)


COMMON = ("run", "input", "out", "device", "samples", "seed", "batch_size")


def door_parser(project: str | None = None, module=None) -> argparse.ArgumentParser:
    """The options of `avgen generate --run ...`, with the project's own when its module is given."""
    parser = argparse.ArgumentParser(
        prog="avgen generate",
        description="Sound for videos or images, or images for sounds, from a trained run: every input of "
        "--input (a file or a folder), each output with a JSON sidecar saying how it was made.",
        epilog="`avgen generate --run <run> --help` also lists the options of the run's project; "
        "`avgen generate --project <p> --help` the per-project command of before.",
    )
    parser.add_argument("--run", required=True, help="a run folder, runs/<project>/<experiment>/<version>")
    parser.add_argument("--input", required=True, help="a file, or a folder whose files are all taken")
    parser.add_argument("--out", required=True, help="the folder the outputs and their sidecars go to")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if present)")
    parser.add_argument("--samples", type=int, default=1, help="outputs per input")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--batch-size", dest="batch_size", type=int, default=1, help="inputs per model call (default 1)"
    )
    if module is not None:
        module.add_options(parser.add_argument_group(f"{project} options"))
    return parser


def run_and_module(argv: list[str], module_name: str):
    """(`--run`, its project, the project's `module_name` module) read from a command line before it is
    parsed, since the run's project adds its own options; Nones when `--run` is not given yet."""
    from shared.discovery import project_module

    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--run")
    run = first.parse_known_args(argv)[0].run
    if run is None:
        return None, None, None
    project = project_of_run(run)
    return run, project, project_module(project, module_name)


def main(argv: list[str]) -> list[GeneratedItem]:
    """`avgen generate --run ...`: every input of `--input` through the run's generator."""

    run, project, module = run_and_module(argv, "generate")
    args = door_parser(project, module).parse_args(argv)
    options = {name: value for name, value in vars(args).items() if name not in COMMON}
    device = args.device or default_device()
    if not Path(args.input).exists():
        raise UserError(f"{args.input}: no such file or folder")
    generator = module.load_generator(Path(run), device, batch_size=args.batch_size, **options)
    inputs, skipped = collect_inputs(args.input, generator.inputs)
    for path in skipped:
        print(f"skipped {path}: {project} takes {accepted(generator.inputs)}", file=sys.stderr)
    items = generator.generate(inputs, Path(args.out), args.samples, args.seed)
    for item in items:
        print(item.sidecar)
    return items
