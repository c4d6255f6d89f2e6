"""What an evaluation writes: metrics as {name: {value, low, high}}, markdown tables and matplotlib figures.

Figures use matplotlib's object API (`matplotlib.figure.Figure`, the Agg renderer), no pyplot state: they are
made the same in a server, a test or a thread.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from shared.metrics.bootstrap import format_interval

SUFFIXES = ("_lo", "_hi")


def nest(flat: dict[str, float]) -> dict[str, dict[str, float | None]]:
    """{name: value, `<name>_lo`, `<name>_hi`} -> {name: {"value", "low", "high"}} (None where no interval)."""
    out = {}
    for name, value in flat.items():
        if name.endswith(SUFFIXES) and name[:-3] in flat:
            continue
        out[name] = {"value": value, "low": flat.get(f"{name}_lo"), "high": flat.get(f"{name}_hi")}
    return out


def cell(metric: dict[str, float | None]) -> str:
    """`value [low, high]` (digits by the interval's width), or the value alone."""
    value, low, high = metric["value"], metric.get("low"), metric.get("high")
    if value is None or not math.isfinite(value):
        return str(value)
    if low is None or high is None:
        return f"{value:.4g}"
    return format_interval(value, low, high)


def heading(name: str, better: str | None) -> str:
    return name + {"higher": " ↑", "lower": " ↓"}.get(better or "", "")


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def plot_metric_bars(
    systems: dict[str, dict[str, dict[str, float | None]]],
    path: Path,
    title: str,
    better: dict[str, str | None] | None = None,
    groups: list[str] | None = None,
) -> Path:
    """One panel per metric, one bar per system with its interval as a whisker; a colour per system, or per
    group where `groups` names each bar's (the runs of one system in a comparison)."""
    from matplotlib.figure import Figure

    names = list(dict.fromkeys(name for metrics in systems.values() for name in metrics))
    columns = min(4, len(names)) or 1
    rows = math.ceil(len(names) / columns) or 1
    figure = Figure(figsize=(3.2 * columns, 2.8 * rows + 0.6), layout="constrained")
    figure.suptitle(title)
    colours = bar_colours(list(systems), groups)
    labels = list(systems)
    for index, name in enumerate(names):
        axes = figure.add_subplot(rows, columns, index + 1)
        x = np.arange(len(labels))
        values = [systems[s].get(name, {}).get("value") for s in labels]
        heights = [v if v is not None and math.isfinite(v) else 0.0 for v in values]
        low = [_whisker(systems[s].get(name), below=True) for s in labels]
        high = [_whisker(systems[s].get(name), below=False) for s in labels]
        axes.bar(x, heights, color=colours, yerr=[low, high], capsize=4)
        axes.set_title(heading(name, (better or {}).get(name)), fontsize=10)
        axes.set_xticks(x, [str(i + 1) for i in x])
        axes.tick_params(labelsize=8)
    handles = [_patch(colour) for colour in colours]
    figure.legend(handles, [f"{i + 1}: {label}" for i, label in enumerate(labels)], loc="outside lower center",
                  fontsize=8, ncols=min(3, len(labels)))  # fmt: skip
    return _save(figure, path)


def bar_colours(bars: list[str], groups: list[str] | None = None) -> list[str]:
    """Matplotlib's cycle colour of each bar: one per bar, or one per group where `groups` names each bar's."""
    groups = groups or bars
    order = list(dict.fromkeys(groups))
    return [f"C{order.index(group) % 10}" for group in groups]


def _save(figure, path: Path) -> Path:
    from shared.files import atomic_path

    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    return Path(path)


def _whisker(metric: dict | None, below: bool) -> float:
    if not metric or metric.get("low") is None or metric.get("high") is None or metric["value"] is None:
        return 0.0
    edge = metric["low"] if below else metric["high"]
    return max(0.0, (metric["value"] - edge) if below else (edge - metric["value"]))


def _patch(colour: str):
    from matplotlib.patches import Patch

    return Patch(color=colour)


def plot_examples(
    pairs: list[tuple[str, np.ndarray, np.ndarray]], path: Path, title: str, spectrogram: bool
) -> Path:
    """A grid of (clip id, real, generated): mels [F, T] in [0, 1] (low frequencies at the bottom) or images
    [H, W, 3] in [0, 1], the real one on the left."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 1.9 * len(pairs) + 0.5), layout="constrained")
    figure.suptitle(title)
    for row, (clip_id, real, generated) in enumerate(pairs):
        for column, (picture, kind) in enumerate(((real, "real"), (generated, "generated"))):
            axes = figure.add_subplot(len(pairs), 2, 2 * row + column + 1)
            if spectrogram:
                axes.imshow(picture, origin="lower", aspect="auto", cmap="magma", vmin=0, vmax=1)
            else:
                axes.imshow(np.clip(picture, 0, 1))
            axes.set_title(f"{clip_id} ({kind})", fontsize=8)
            axes.set_axis_off()
    return _save(figure, path)


def example_pictures(
    items: torch.Tensor, item_ids: list[str], reals: dict[str, torch.Tensor], sample_rate: int | None, n: int
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(clip id, real, generated) pictures of the first item of each of the first `n` clips in `reals`: SpecVQGAN
    mels of audio (`melception_inputs`), or images in [0, 1]."""
    pairs = []
    for clip_id, real in list(reals.items())[:n]:
        generated = items[item_ids.index(clip_id)]
        if sample_rate is not None:
            from shared.encoders import melception_inputs

            mels = melception_inputs(torch.stack([real.float(), generated.float()]), sample_rate)
            pairs.append((clip_id, mels[0].numpy(), mels[1].numpy()))
        else:
            pictures = [((x.float() + 1) / 2).permute(1, 2, 0).numpy() for x in (real, generated)]
            pairs.append((clip_id, *pictures))
    return pairs
