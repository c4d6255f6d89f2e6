"""`avgen demo`: the five systems in one web page (Gradio), a tab per project, on the runs under `runs/`.

    make train PROJECT=specvqgan && make demo          # then open http://127.0.0.1:7860
    avgen demo [--runs runs] [--toy data/toy] [--port 7860] [--host 127.0.0.1] [--device cuda]
    avgen demo --projects gravo audiotoken --options audiotoken "--steps 20"   # some tabs; a project's options

Each tab offers the runs of its project found under `<runs>/<project>/<experiment>/<version>` (the newest
checkpoint first; "refresh" looks again after a training; a project's generate module may narrow them to the
stages its generator opens with `opens_run(run) -> bool`), an upload of the inputs the project takes, a few
clips, sounds or pictures of the toy set as examples (`make data` writes them), and shows the result as a
person wants it: the video with its new sound, the sound in a player beside its spectrogram, or the image; the
JSON sidecar says how it was made. Generation goes through the same door as `avgen generate --run`
(`shared.generation.open_run`), one generator per (run, device) kept loaded; its progress bar is the page's.

A bad upload (a file of another kind, a video without an audio track, a corrupt file) or a project without a
trained run gets one clear line in the page, not a traceback; any other failure gets one line too, its
traceback in the server's log. The demo needs no network: Gradio's analytics are off, there are no share links
(they go through Gradio's servers), the page uses a font Gradio ships, and its template loses the tags that
would fetch from a CDN (`LocalPage`).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no calls home, no version check

import gradio as gr

from shared.generation import (
    GeneratedItem,
    Generator,
    RunGenerator,
    default_device,
    kind_of,
    open_run,
)
from shared.runs import UserError, run_checkpoint

# tab order: the video -> audio systems, then the audio -> image ones
PROJECTS = ("specvqgan", "tiva", "gravo", "audiotoken", "wavbrivl")
EXAMPLES_PER_KIND = 3
# generated pictures fill their box, their pixels shown as pixels (toy images are a few dozen pixels wide)
PICTURE = ["avgen-picture"]
CSS = ".avgen-picture img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }"
# the page's progress bar follows the generators' tqdm bars (Gradio gives each call its own tracker)
TQDM_PROGRESS = gr.Progress(track_tqdm=True)


def with_article(kind: str) -> str:
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


@dataclass(frozen=True)
class Project:
    """What a tab needs to know before any run is opened: the project's generator class attributes."""

    name: str
    direction: str
    inputs: tuple[str, ...]

    @property
    def makes_audio(self) -> bool:
        return self.direction.endswith("->audio")

    @property
    def takes(self) -> str:
        return " or ".join(with_article(kind) for kind in self.inputs)

    @property
    def label(self) -> str:
        return f"{self.name}: {' or '.join(self.inputs)} → {'sound' if self.makes_audio else 'image'}"


def project_facts(name: str) -> Project:
    """The direction and input kinds of `projects/<name>/generate.py`'s `Generator` subclass."""
    from shared.discovery import project_module

    module = project_module(name, "generate")
    classes = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, Generator)
        and getattr(value, "project", None) == name
    ]
    if not classes:
        raise UserError(
            f"projects/{name}/generate.py has no Generator of project {name!r} (shared.generation)"
        )
    return Project(name, classes[0].direction, tuple(classes[0].inputs))


def find_runs(runs_root: str | Path, project: str) -> list[Path]:
    """The run folders of `project` a generator can be opened on, newest checkpoint first: those under
    `<runs_root>/<project>/<experiment>/<version>` with a config.yaml and a checkpoint, which the project's
    generate module accepts (its `opens_run(run)`, where it has one; every stage's run otherwise)."""
    from shared.discovery import project_module

    folder = Path(runs_root) / project
    if not folder.is_dir():
        return []
    opens_run = getattr(project_module(project, "generate"), "opens_run", lambda run: True)
    found = []
    for run in folder.glob("*/*"):
        if not (run / "config.yaml").is_file():
            continue
        try:
            checkpoint = run_checkpoint(run)
        except UserError:  # a run that has not written a checkpoint yet
            continue
        if opens_run(run):
            found.append((-checkpoint.stat().st_mtime, str(run), run))
    return [run for *_, run in sorted(found)]


def run_label(runs_root: str | Path, run: Path) -> str:
    """`<experiment>/<version>`: what tells a project's runs apart."""
    return str(run.relative_to(Path(runs_root) / run.parent.parent.name))


def toy_examples(toy_root: str | Path, kinds: tuple[str, ...]) -> list[tuple[Path, str]]:
    """A few test clips of the toy set (`shared.data.toy`), of distinct classes, in each kind the project takes:
    the clip (video), its sound (audio) or an event frame (image), each with a caption naming its class. Empty
    when the toy set is not there."""
    import csv

    toy_root = Path(toy_root)
    index = toy_root / "events.csv"
    if not index.is_file():
        return []
    with index.open(newline="") as rows:
        firsts: dict[str, str] = {}
        for row in csv.DictReader(rows):
            if row["split"] == "test":
                firsts.setdefault(row["label"], row["clip_id"])
    clips = list(firsts.items())[:EXAMPLES_PER_KIND]
    slugs = sorted(path.name for path in (toy_root / "imagehear").glob("*") if path.is_dir())
    examples = {
        "video": [
            (toy_root / "vggsound" / "video" / f"{clip}.mp4", f"{label} (video)") for label, clip in clips
        ],
        "audio": [
            (toy_root / "vggsound" / "audio" / f"{clip}.wav", f"{label} (sound)") for label, clip in clips
        ],
        "image": [
            (toy_root / "imagehear" / slug / "00.jpg", f"{slug.replace('_', ' ')} (picture)")
            for slug in slugs[:EXAMPLES_PER_KIND]
        ],
    }
    return [(path, caption) for kind in kinds for path, caption in examples[kind] if path.is_file()]


def project_options(project: str, args: str = "") -> dict:
    """The generator options of `project` from `args` as `avgen generate --run` takes them ("--steps 10"), with
    the project's defaults for the others; a UserError for an option the project does not have."""
    from shared.discovery import project_module

    parser = argparse.ArgumentParser(
        prog=f"avgen demo --options {project}", add_help=False, exit_on_error=False
    )
    project_module(project, "generate").add_options(parser)
    try:
        options, unknown = parser.parse_known_args(shlex.split(args))
    except argparse.ArgumentError as error:
        raise UserError(f"--options {project} {args!r}: {error}") from None
    if unknown:
        raise UserError(f"--options {project} {args!r}: {project} does not take {' '.join(unknown)}")
    return vars(options)


class Generators:
    """One generator per (run, device), opened on first use with its project's `options` and kept: the models
    load once. A run trained further (a newer checkpoint) is opened again."""

    def __init__(self, options: dict[str, dict] | None = None):
        self.options = options or {}
        self.opened: dict[tuple[str, str, float], RunGenerator] = {}
        self.lock = threading.Lock()

    def get(self, project: str, run: Path, device: str) -> RunGenerator:
        key = (str(Path(run).resolve()), device, run_checkpoint(run).stat().st_mtime)
        with self.lock:
            if key not in self.opened:
                self.opened = {k: v for k, v in self.opened.items() if k[:2] != key[:2]}
                self.opened[key] = open_run(run, device, **self.options.get(project, {}))
            return self.opened[key]


def user_message(error: UserError, upload: Path | None) -> str:
    """The error's one line, with the upload's temporary path shortened to the name the user gave it."""
    message = " ".join(str(error).split())
    return message.replace(str(upload), upload.name) if upload is not None else message


def generate(
    generators: Generators,
    project: Project,
    run: str | None,
    upload: str | None,
    seed: float,
    out_root: Path,
    device: str,
) -> tuple[GeneratedItem, float]:
    """One output of `run` for the uploaded file, and the seconds it took (model loading included); a UserError
    with a message for the page when there is no run, no file, or a file the project cannot use."""
    if not run:
        raise UserError(
            f"no trained {project.name} run to generate with: train one with `make train PROJECT={project.name}`, "
            "then press refresh"
        )
    if not upload:
        raise UserError("upload a file (or pick an example) first")
    upload_path = Path(upload)
    try:
        kind = kind_of(upload_path)
        if kind not in project.inputs:  # told before the run's models are loaded
            what = f"{with_article(kind)} file" if kind else "no file of a known kind"
            raise UserError(f"{upload_path}: {what}; {project.name} takes {project.takes}")
        start = time.perf_counter()
        generator = generators.get(project.name, Path(run), device)
        out_dir = Path(tempfile.mkdtemp(prefix=f"{project.name}-", dir=out_root))
        item = generator.generate([upload_path], out_dir, samples=1, seed=int(seed))[0]
        return item, time.perf_counter() - start
    except UserError as error:
        raise UserError(user_message(error, upload_path)) from error


def respond(
    generators: Generators,
    project: Project,
    run: str | None,
    upload: str | None,
    seed: float,
    out_root: Path,
    device: str,
) -> list:
    """What pressing generate shows: the values of the tab's result components, or a gr.Error whose one line
    the page shows: the message of a mistake the user can fix (no traceback), or what failed for any other
    error (a bug, or a run the project's generator cannot open), its traceback in the server's log."""
    import traceback

    try:
        item, seconds = generate(generators, project, run, upload, seed, out_root, device)
    except UserError as error:
        raise gr.Error(str(error), print_exception=False) from None
    except Exception as error:
        traceback.print_exc()
        message = " ".join(f"{type(error).__name__}: {error}".split())
        raise gr.Error(
            f"{project.name} failed on {run}: {message} (traceback in the server's log)",
            print_exception=False,
        ) from None
    print(f"avgen demo: {project.name} generated {item.input.name} in {seconds:.2f} s", flush=True)
    return _outputs(project, item, seconds, device)


def _outputs(project: Project, item: GeneratedItem, seconds: float, device: str) -> list:
    """The values of a tab's result components (`_result_components`' order) for one generated item."""
    import json

    files = item.files
    about = json.loads(item.sidecar.read_text())
    note = (
        f"Made in {seconds:.1f} s on {device} (model loading included the first time), seed {about['seed']}; "
        f"the files and their sidecar are in `{item.sidecar.parent}` on the server."
    )
    if project.makes_audio:
        video = files.get("video")
        media = [
            gr.Video(value=str(video) if video else None, visible=video is not None),
            str(files["audio"]),
            str(files["spectrogram"]),
        ]
    else:
        media = [str(files["image"])]
    return [*media, note, about]


def _result_components(project: Project) -> list:
    name = project.name
    if project.makes_audio:
        with gr.Row():
            media = [
                gr.Video(label="the video with its new sound", elem_id=f"{name}-video", interactive=False),
                gr.Audio(label="the sound", type="filepath", elem_id=f"{name}-audio", interactive=False),
            ]
        media.append(
            gr.Image(
                label="its spectrogram", type="filepath", elem_id=f"{name}-spectrogram", elem_classes=PICTURE
            )
        )
    else:
        media = [
            gr.Image(
                label="the image",
                type="filepath",
                elem_id=f"{name}-image",
                interactive=False,
                height=320,
                elem_classes=PICTURE,
            )
        ]
    note = gr.Markdown(elem_id=f"{name}-note")
    with gr.Accordion("how it was made (JSON sidecar)", open=False):
        about = gr.JSON(elem_id=f"{name}-sidecar")
    return [*media, note, about]


def _tab(
    project: Project, runs_root: Path, toy_root: Path, out_root: Path, generators: Generators, device: str
):
    name = project.name

    def run_choices() -> list[tuple[str, str]]:
        return [(run_label(runs_root, run), str(run)) for run in find_runs(runs_root, name)]

    def refresh():
        choices = run_choices()
        if not choices:
            gr.Warning(
                f"no {name} run with a checkpoint under {runs_root / name}: `make train PROJECT={name}`"
            )
        return gr.Dropdown(choices=choices, value=choices[0][1] if choices else None)

    def on_generate(run, upload, seed, progress=TQDM_PROGRESS):
        progress(0, desc="loading the run")
        return respond(generators, project, run, upload, seed, out_root, device)

    choices = run_choices()
    with gr.Tab(project.label, id=name, elem_id=f"tab-{name}"):
        gr.Markdown(
            f"**{name}** makes {'the sound' if project.makes_audio else 'an image'} for {project.takes}: upload "
            "one (or pick a toy example) and press generate."
        )
        with gr.Row():
            with gr.Column():
                with gr.Row():
                    run = gr.Dropdown(
                        choices=choices,
                        value=choices[0][1] if choices else None,
                        label=f"run (under {runs_root / name})",
                        elem_id=f"{name}-run",
                        scale=4,
                    )
                    refresh_button = gr.Button("refresh", elem_id=f"{name}-refresh", scale=1)
                # no file_types: a file of another kind gets the demo's message, which says what the project
                # takes (Gradio's filter would drop it with a list of suffixes)
                upload = gr.File(
                    label=f"your {' or '.join(project.inputs)}",
                    type="filepath",
                    elem_id=f"{name}-upload",
                )
                examples = toy_examples(toy_root, project.inputs)
                if examples:
                    gr.Examples(
                        [[str(path)] for path, _ in examples],
                        inputs=[upload],
                        label="toy examples",
                        example_labels=[caption for _, caption in examples],
                    )
                seed = gr.Number(value=0, precision=0, label="seed", elem_id=f"{name}-seed")
                button = gr.Button("generate", variant="primary", elem_id=f"{name}-generate")
            with gr.Column():
                results = _result_components(project)
        refresh_button.click(refresh, outputs=[run])
        button.click(on_generate, inputs=[run, upload, seed], outputs=results)


def build_demo(
    runs_root: str | Path,
    toy_root: str | Path,
    out_root: str | Path,
    device: str,
    options: dict[str, dict] | None = None,
    projects: tuple[str, ...] = PROJECTS,
) -> gr.Blocks:
    """The page: a tab for each of `projects`; `options`: each project's generator options (`project_options`),
    its defaults for a project not named."""
    from shared.discovery import projects_with

    runs_root, toy_root, out_root = Path(runs_root), Path(toy_root), Path(out_root)
    available = projects_with("generate")
    unknown = [name for name in projects if name not in available]
    if unknown:
        raise UserError(
            f"--projects: no generator for {', '.join(unknown)}; projects: {', '.join(available)}"
        )
    tabs = [project_facts(name) for name in projects]
    generators = Generators(options)
    # Gradio's default theme loads its font from Google's servers; the fonts it ships need no network
    theme = gr.themes.Default(
        font=[gr.themes.utils.fonts.LocalFont("IBM Plex Sans"), "ui-sans-serif", "sans-serif"]
    )
    with gr.Blocks(
        title="avgen demo", theme=theme, css=CSS, analytics_enabled=False, delete_cache=(3600, 3600)
    ) as demo:
        gr.Markdown(
            "# avgen: audio-visual generation\n"
            f"Five papers' systems on one stack, each on its runs under `{runs_root}` (device: {device})."
        )
        with gr.Tabs():
            for project in tabs:
                _tab(project, runs_root, toy_root, out_root, generators, device)
    return demo


# tags of Gradio's page template that make the browser fetch from the internet: an iframe-resizer script from
# cdnjs (only for pages embedded in another site) and preconnects to Google's font servers
EXTERNAL_TAGS = re.compile(
    rb'<script[^>]*\bsrc="https?://[^"]*"[^>]*>\s*</script>|<link[^>]*\bhref="https?://[^"]*"[^>]*>'
)


class LocalPage:
    """ASGI middleware: the page (`GET /`) without `EXTERNAL_TAGS`, so that opening the demo asks nothing of the
    internet (the browser test checks every request the page makes goes to the demo's own server)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != "/":
            await self.app(scope, receive, send)
            return
        start: dict = {}
        body: list[bytes] = []

        async def send_local(message):
            if message["type"] == "http.response.start":
                start.update(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body"):
                return
            page = b"".join(body)
            headers = dict(start["headers"])
            if headers.get(b"content-type", b"").startswith(b"text/html"):
                page = EXTERNAL_TAGS.sub(b"", page)
            headers[b"content-length"] = str(len(page)).encode()
            await send({**start, "headers": list(headers.items())})
            await send({"type": "http.response.body", "body": page})

        await self.app(scope, receive, send_local)


def serve(demo: gr.Blocks, host: str, port: int, toy_root: str | Path, block: bool = True) -> None:
    """Serve the page at http://host:port/ (with the toy examples' folder), until stopped when `block`."""
    from starlette.middleware import Middleware

    demo.queue().launch(
        server_name=host,
        server_port=port,
        share=False,
        show_api=False,
        allowed_paths=[str(Path(toy_root).resolve())] if Path(toy_root).is_dir() else [],
        app_kwargs={"middleware": [Middleware(LocalPage)]},
        prevent_thread_lock=not block,
        quiet=not block,
    )


def main(argv: list[str] | None = None) -> None:
    from shared.generation import check_device

    parser = argparse.ArgumentParser(prog="avgen demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="runs", help="the folder of run folders (default: runs)")
    parser.add_argument("--toy", default="data/toy", help="the toy set the examples come from (make data)")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve the local network")
    parser.add_argument("--port", type=int, default=7860, help="default: 7860")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if present)")
    parser.add_argument(
        "--options",
        nargs=2,
        action="append",
        default=[],
        metavar=("PROJECT", "ARGS"),
        help='a project\'s generator options as `avgen generate --run` takes them, e.g. --options audiotoken "--steps 20"',
    )
    parser.add_argument(
        "--projects", nargs="+", default=list(PROJECTS), help=f"the tabs (default: {' '.join(PROJECTS)})"
    )
    args = parser.parse_args(argv)
    device = check_device(args.device or default_device())
    options = {project: project_options(project, text) for project, text in args.options}
    with tempfile.TemporaryDirectory(prefix="avgen-demo-") as out_root:
        demo = build_demo(args.runs, args.toy, out_root, device, options, tuple(args.projects))
        serve(demo, args.host, args.port, args.toy)
