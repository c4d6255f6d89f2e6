"""`avgen demo` in headless Chromium: the page driver of the browser test (tests/shared/test_demo_browser.py) and,
run as a script, a screenshot of a result in every tab for the docs with the time from pressing generate to it.

    python -m benchmarks.demo_browser --runs runs --toy data/toy --out docs/demo   # after make train PROJECT=...
    python -m benchmarks.demo_browser --run specvqgan toy_sampler/default ...     # a run of your choice

The script serves the demo in this process on a free local port, opens it in Debian's `chromium` through
`chromium-driver` (selenium), and in each tab that has a run uploads the first toy example, presses generate
and waits until the page shows the result (the media loaded), then presses again (`--presses`). It writes
`<out>/<project>.png` (the tab, scaled to `--width` pixels) and prints one line per tab: the run, the input and
the seconds from each press to its result (the first includes opening the run; the later ones reuse it).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def free_port() -> int:
    """A local TCP port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def headless_chromium(width: int = 1280, height: int = 1400) -> webdriver.Chrome:
    """Debian's chromium through chromium-driver, headless, its network requests logged (`requested_urls`)."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        raise FileNotFoundError(
            "the demo's browser test needs Debian's chromium and chromium-driver: "
            "apt-get install chromium chromium-driver (.ci/run installs them)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--mute-audio",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(options=options, service=Service(driver))


def requested_urls(driver: webdriver.Chrome) -> list[str]:
    """The URLs the page has requested since the last call (Chrome's performance log)."""
    import json

    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


@dataclass(frozen=True)
class Media:
    """A media element of a result as the browser sees it once loaded: seconds, or pixels for an image."""

    url: str
    duration: float | None = None
    width: int | None = None
    height: int | None = None


# A media file loaded by the browser in a fresh element: [duration, width, height] or an error.
LOAD_MEDIA = """
const [tag, url, done] = arguments;
const element = document.createElement(tag);
element.preload = "metadata";
element.onloadedmetadata = () => done([element.duration, element.videoWidth, element.videoHeight]);
element.onerror = () => done("cannot play " + url + ": media error " + (element.error && element.error.code));
element.src = url;
"""


class DemoPage:
    """The demo's page in a browser, driven as a person uses it: pick a tab, upload, press generate, look."""

    def __init__(self, driver: webdriver.Chrome, url: str, timeout: float = 600.0):
        self.driver, self.url, self.timeout = driver, url, timeout
        driver.set_script_timeout(60)

    def wait(self, condition, timeout: float | None = None, message: str = ""):
        return WebDriverWait(self.driver, timeout or self.timeout, poll_frequency=0.1).until(
            lambda driver: condition(), message
        )

    def open(self) -> None:
        self.driver.get(self.url)
        self.wait(lambda: self.driver.find_elements(By.CSS_SELECTOR, "button[role=tab]"), 60, "no tabs")

    def tabs(self) -> list[str]:
        return [button.text for button in self.driver.find_elements(By.CSS_SELECTOR, "button[role=tab]")]

    def pick(self, project: str) -> None:
        self.driver.find_element(By.ID, f"tab-{project}-button").click()
        panel = self.driver.find_element(By.ID, f"tab-{project}")
        self.wait(panel.is_displayed, 30, f"the {project} tab does not open")

    def choose_run(self, project: str, label: str) -> None:
        """Pick the run `label` (`<experiment>/<version>`) in the tab's run dropdown."""
        field = self.driver.find_element(By.CSS_SELECTOR, f"#{project}-run input")
        if field.get_attribute("value") == label:  # already chosen (the list marks it and its text differs)
            return
        field.click()
        options = f"#{project}-run li[role=option]"
        self.wait(lambda: self.driver.find_elements(By.CSS_SELECTOR, options), 30, f"{project}: no run list")
        matching = [
            option for option in self.driver.find_elements(By.CSS_SELECTOR, options) if option.text == label
        ]
        if not matching:
            raise ValueError(f"{project}: no run {label!r} in the list")
        matching[0].click()
        self.wait(lambda: field.get_attribute("value") == label, 30, f"{project}: {label} is not chosen")

    def upload(self, project: str, path: Path) -> None:
        """Give the tab's upload the file, as a person choosing it in the file dialog; wait until it is sent."""
        upload = self.driver.find_element(By.ID, f"{project}-upload")
        if not upload.find_elements(By.CSS_SELECTOR, "input[type=file]"):  # a file is there: clear it first
            upload.find_element(By.CSS_SELECTOR, "button[aria-label=Clear]").click()
            self.wait(
                lambda: upload.find_elements(By.CSS_SELECTOR, "input[type=file]"), 30, "no upload input"
            )
        upload.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(Path(path).resolve()))
        shown = lambda: path.stem in upload.text and path.suffix in upload.text  # noqa: E731 (shown as "stem\n.suffix")
        self.wait(shown, 60, f"{path.name} is not shown as uploaded")

    def errors(self) -> list[str]:
        """The texts of the error messages (toasts) the page shows."""
        toasts = self.driver.find_elements(By.CSS_SELECTOR, ".toast-body.error .toast-text")
        return [toast.get_attribute("textContent").strip() for toast in toasts]  # also while it fades in

    def generate(self, project: str) -> tuple[float | None, str | None]:
        """Press generate and wait for the result or an error message: (seconds from the press to the result
        shown, media loaded; None for an error), and the new error message if one came instead."""
        # the note's text (not its status overlay, which changes while the press is pending) names the press's
        # own output folder: a new note is a new result
        note = self.driver.find_element(By.CSS_SELECTOR, f"#{project}-note [data-testid=markdown]")
        before_note, before_errors = note.text, Counter(self.errors())
        self.driver.find_element(By.ID, f"{project}-generate").click()
        start = time.perf_counter()
        self.wait(
            lambda: (note.text and note.text != before_note) or Counter(self.errors()) - before_errors,
            message=f"{project}: no result and no message",
        )
        new_errors = Counter(self.errors()) - before_errors  # toasts stack in no set order
        if new_errors:
            return None, next(iter(new_errors))
        self.wait(lambda: self.results_loaded(project), message=f"{project}: the result does not load")
        return time.perf_counter() - start, None

    def results_loaded(self, project: str) -> bool:
        return self.driver.execute_script(
            """
            const project = arguments[0];
            const video = document.querySelector(`#${project}-video video`);
            const images = [...document.querySelectorAll(`#${project}-spectrogram img, #${project}-image img`)];
            return (!video || video.readyState >= 1) && images.length > 0
                && images.every(image => image.complete && image.naturalWidth > 0);
            """,
            project,
        )

    def media(self, project: str) -> dict[str, Media]:
        """The result's media as the browser plays or shows them: "video" (the page's player), "audio" (the
        sound's file loaded in a fresh audio element: Gradio's player decodes it off the DOM), "spectrogram" or
        "image" (natural size)."""
        found = {}
        for video in self.driver.find_elements(By.CSS_SELECTOR, f"#{project}-video video"):
            duration, error = self.driver.execute_script(
                "const v = arguments[0]; return [v.duration, v.error && v.error.code];", video
            )
            if error is not None:
                raise AssertionError(f"{project}: the video does not play (media error {error})")
            found["video"] = Media(video.get_attribute("src"), duration=duration)
        for link in self.driver.find_elements(By.CSS_SELECTOR, f"#{project}-audio a.download-link"):
            url = link.get_attribute("href")
            loaded = self.driver.execute_async_script(LOAD_MEDIA, "audio", url)
            if isinstance(loaded, str):
                raise AssertionError(f"{project}: {loaded}")
            found["audio"] = Media(url, duration=loaded[0])
        for name in ("spectrogram", "image"):
            for image in self.driver.find_elements(By.CSS_SELECTOR, f"#{project}-{name} img"):
                width, height = self.driver.execute_script(
                    "return [arguments[0].naturalWidth, arguments[0].naturalHeight];", image
                )
                found[name] = Media(image.get_attribute("src"), width=width, height=height)
        return found

    def show_video_at(self, project: str, seconds: float) -> None:
        """Move the result's video to `seconds` (a frame worth a screenshot) and wait until it is shown."""
        video = self.driver.find_element(By.CSS_SELECTOR, f"#{project}-video video")
        self.driver.execute_async_script(
            "const [video, seconds, done] = arguments; video.onseeked = () => done(); video.currentTime = seconds;",
            video,
            seconds,
        )

    def screenshot(self, path: Path, width: int | None = None) -> Path:
        """The whole window as a png at `path`, scaled to `width` pixels when given (for the docs)."""
        from PIL import Image

        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))
        if width is not None:  # small for the repo: scaled, 128 colours
            with Image.open(path) as shot:
                small = shot.convert("RGB").resize(
                    (width, round(shot.height * width / shot.width)), Image.LANCZOS
                )
            small.quantize(128, Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
        return path


def first_onset(toy_root: str | Path, example: Path) -> float:
    """The first event's onset (seconds) of a toy clip, by its clip id (`shared.data.toy`'s events.csv)."""
    import csv

    with (Path(toy_root) / "events.csv").open(newline="") as rows:
        onsets = {row["clip_id"]: row["onsets"] for row in csv.DictReader(rows)}
    return float(onsets[example.stem].split()[0])


def main(argv: list[str] | None = None) -> None:
    from shared import demo

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--toy", default="data/toy")
    parser.add_argument("--out", default="docs/demo", help="where the screenshots go")
    parser.add_argument("--width", type=int, default=900, help="of the screenshots, in pixels")
    parser.add_argument("--height", type=int, default=1100, help="of the browser window, in pixels")
    parser.add_argument("--projects", nargs="+", default=list(demo.PROJECTS))
    parser.add_argument("--presses", type=int, default=2, help="presses of generate per tab (timed each)")
    parser.add_argument(
        "--run",
        nargs=2,
        action="append",
        default=[],
        metavar=("PROJECT", "RUN"),
        help="the run to use in PROJECT's tab, <experiment>/<version> (default: the one the page offers first)",
    )
    args = parser.parse_args(argv)
    chosen = dict(args.run)
    out = Path(args.out)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="avgen-demo-") as out_root:
        page_app = demo.build_demo(args.runs, args.toy, out_root, "cpu", projects=tuple(args.projects))
        demo.serve(page_app, "127.0.0.1", port, args.toy, block=False)
        driver = headless_chromium(height=args.height)
        try:
            page = DemoPage(driver, f"http://127.0.0.1:{port}/")
            page.open()
            for project in args.projects:
                runs = demo.find_runs(args.runs, project)
                examples = demo.toy_examples(args.toy, demo.project_facts(project).inputs)
                if not runs or not examples:
                    print(f"{project}: skipped ({'no run' if not runs else 'no toy example'})")
                    continue
                run = Path(args.runs) / project / chosen[project] if project in chosen else runs[0]
                page.pick(project)
                if project in chosen:
                    page.choose_run(project, chosen[project])
                page.upload(project, examples[0][0])
                try:
                    presses = [page.generate(project) for _ in range(args.presses)]
                except TimeoutException as timeout:
                    print(f"{project}: {timeout.msg}")
                    continue
                error = next((error for _, error in presses if error is not None), None)
                if error is None and "video" in page.media(project):  # the first event's shape on screen
                    page.show_video_at(project, first_onset(args.toy, examples[0][0]) + 0.04)
                shot = page.screenshot(out / f"{project}.png", args.width)
                seconds = " s, ".join(f"{seconds:.1f}" for seconds, _ in presses)
                result = (
                    f"{seconds} s from the presses to their results" if error is None else f"error: {error}"
                )
                print(f"{project}: {demo.run_label(args.runs, run)}, {examples[0][1]}: {result}; {shot}")
        finally:
            driver.quit()
            page_app.close()


if __name__ == "__main__":
    main()
