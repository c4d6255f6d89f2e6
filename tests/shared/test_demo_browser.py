"""`avgen demo` in a real browser: the server started as a user starts it (a subprocess on a free local port), its
page driven in headless Chromium (Debian's chromium + chromium-driver, selenium): a toy clip uploaded to a video ->
sound tab (GRAVO) and a toy sound to a sound -> image tab (AudioToken), generate pressed, and the page must show
playable media of the right duration and an image of the right size; a bad upload must get its one-line message.
Both runs are the tiny random-weight runs of the projects' own generate tests (imported). Screenshots go to a
temporary folder (their paths are printed, with the seconds from the press to the result)."""

from __future__ import annotations

import csv
import io
import re
import urllib.request
from pathlib import Path

import pytest
import soundfile as sf

from benchmarks.demo_browser import DemoPage, free_port, headless_chromium, requested_urls
from shared.video import video_info
from tests.projects.gravo.test_generate_and_evaluate import runs as gravo_runs  # noqa: F401 (a fixture)
from tests.shared.probes import avgen_env, child
from tests.shared.test_generation_door import (  # noqa: F401 (fixtures)
    AUDIOTOKEN_SMALL,
    audiotoken_official,
    audiotoken_run,
)
from tests.shared.tiny_clip import write_video_only_mp4

pytestmark = pytest.mark.slow

STARTUP_S = 300.0  # the server's start (imports of torch, gradio and the projects) on a busy two-core machine


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory, gravo_runs, audiotoken_run) -> Path:  # noqa: F811 (the fixtures imported above)
    """`runs/<project>/<experiment>/<version>` as `make train` lays them out, linking the tiny runs."""
    root = tmp_path_factory.mktemp("demo") / "runs"
    low, _ = gravo_runs
    for place, run in {
        "gravo/toy_low_gravo/default": low,
        "audiotoken/toy_audiotoken/default": audiotoken_run,
    }.items():
        (root / place).parent.mkdir(parents=True)
        (root / place).symlink_to(run.resolve(), target_is_directory=True)
    return root


def wait_for_line(log: Path, pattern: str, proc, timeout: float) -> re.Match:
    """The first match of `pattern` in the server's log, once it writes it; fails with the log if the server
    exits or `timeout` s pass first."""
    import time

    deadline = time.monotonic() + timeout
    while (match := re.search(pattern, log.read_text())) is None:
        if proc.poll() is not None:
            raise AssertionError(f"the demo exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"the demo did not start in {timeout:.0f} s:\n{log.read_text()[-4000:]}")
        time.sleep(0.1)  # polls the log the server writes (probes.wait_for polls its marker the same way)
    return match


@pytest.fixture(scope="module")
def server(runs_root, gravo_runs, toy_root, tmp_path_factory):  # noqa: F811 (the fixture imported above)
    """(the page's URL, the server's log): `avgen demo` on the tiny runs, killed when the module's tests end."""
    _, up = gravo_runs
    log = tmp_path_factory.mktemp("demo_log") / "demo.log"
    small = " ".join(f"--{name}={value}" for name, value in AUDIOTOKEN_SMALL.items())
    args = ["demo", "--runs", str(runs_root), "--toy", str(toy_root), "--port", str(free_port()), "--device", "cpu",
            "--options", "gravo", f"--up {up}", "--options", "audiotoken", small]  # fmt: skip
    with child(args, log, env=avgen_env(PYTHONUNBUFFERED="1")) as proc:
        url = wait_for_line(log, r"Running on local URL:\s+(http://\S+)", proc, STARTUP_S).group(1)
        yield url, log


@pytest.fixture(scope="module")
def page(server):
    driver = headless_chromium()
    try:
        page = DemoPage(driver, server[0])
        page.open()
        yield page
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("demo_screenshots")


def toy_test_clip(toy_root: Path, label_index: int) -> Path:
    with (toy_root / "events.csv").open(newline="") as rows:
        tests = [row for row in csv.DictReader(rows) if row["split"] == "test"]
    return toy_root / "vggsound" / "video" / f"{tests[label_index]['clip_id']}.mp4"


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def test_the_page_has_a_tab_per_project(page):
    assert [tab.split(":")[0] for tab in page.tabs()] == [
        "specvqgan",
        "tiva",
        "gravo",
        "audiotoken",
        "wavbrivl",
    ]


def test_a_toy_clip_gets_its_sound_in_the_video_to_sound_tab(page, toy_root, screenshots):
    clip = toy_test_clip(toy_root, 0)
    page.pick("gravo")
    page.upload("gravo", clip)
    seconds, error = page.generate("gravo")
    assert error is None
    print(
        f"\ngravo (video -> sound): {seconds:.2f} s from pressing generate to the result, model loading included"
    )
    print(f"screenshot: {page.screenshot(screenshots / 'gravo.png')}")
    media = page.media("gravo")
    info = video_info(clip)
    wave, rate = sf.read(io.BytesIO(fetch(media["audio"].url)))
    # GRAVO's sound lasts the video (its samples rounded); the page plays the whole of it
    assert len(wave) == round(info.duration * rate)
    assert media["audio"].duration == pytest.approx(len(wave) / rate, abs=1 / rate)
    # the video, cut to the sound, with it as its track: within a video frame and an AAC frame of the sound
    assert media["video"].duration == pytest.approx(len(wave) / rate, abs=1 / info.fps + 1024 / rate)
    assert media["spectrogram"].width > 0 and media["spectrogram"].height > 0


def test_a_toy_sound_gets_an_image_in_the_sound_to_image_tab(page, toy_root, screenshots):
    sound = toy_root / "vggsound" / "audio" / f"{toy_test_clip(toy_root, 1).stem}.wav"
    page.pick("audiotoken")
    page.upload("audiotoken", sound)
    seconds, error = page.generate("audiotoken")
    assert error is None
    print(
        f"\naudiotoken (sound -> image): {seconds:.2f} s from pressing generate to the result, model loading included"
    )
    print(f"screenshot: {page.screenshot(screenshots / 'audiotoken.png')}")
    image = page.media("audiotoken")["image"]
    assert (image.width, image.height) == (AUDIOTOKEN_SMALL["width"], AUDIOTOKEN_SMALL["height"])  # --options


def test_a_bad_upload_gets_its_one_line_message_in_the_page(page, toy_root, tmp_path, screenshots):
    page.pick("gravo")
    sound = toy_root / "vggsound" / "audio" / f"{toy_test_clip(toy_root, 0).stem}.wav"
    page.upload("gravo", sound)
    assert page.generate("gravo") == (None, f"{sound.name}: an audio file; gravo takes a video or an image")
    silent = tmp_path / "silent.mp4"
    write_video_only_mp4(silent)
    page.pick("audiotoken")
    page.upload("audiotoken", silent)
    seconds, error = page.generate("audiotoken")
    assert seconds is None and error.startswith(
        "silent.mp4: has no audio stream"
    )  # the name, not Gradio's path
    page.screenshot(screenshots / "bad_upload.png")


def test_the_page_asked_only_the_local_server(page, server):
    host = server[0].rstrip("/")
    urls = requested_urls(page.driver)
    assert urls and all(url.startswith((host, "data:", "blob:")) for url in urls), [
        url for url in urls if not url.startswith((host, "data:", "blob:"))
    ]
