"""How wide the toy summary's confidence intervals are for N test clips: the data behind the size of the toy
test split (`shared.data.toy.EXTRA_TEST`).

For every N in `--sizes` (multiples of 6: the first N / 6 test clips of each class) it scores, with the
bootstrap intervals of `shared.metrics`:

- "real vs real": each test clip against the next test clip of its class, a generator that gets the class
  right and the timing wrong (the noise floor of FAD / KL / IS, and a W-dis / DTW-dis far from zero);
- each `--predictions` folder: the waves `avgen predict` wrote for the test clips of a TiVA run
  (`<run>/predictions/wave/<clip_id>.npy`, one generated sample per clip), e.g. one run predicted with
  ground-truth layouts and once with T's.

Melception features and onset curves are computed once per wave, and the metrics of each N from those, so
the measurement costs about one evaluation of the largest N. The cost of the summary itself grows linearly in
N: the generation of `avgen test` dominates it (`projects/tiva/README.md`, "Toy pipeline").

    python benchmarks/toy_test_split_size.py --melception runs/tiva/toy_melception/default/checkpoints/best.ckpt \\
        --predictions gt=runs/tiva/toy_generator/predict_gt/predictions predicted=runs/.../predictions
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from shared.audio import load_audio
from shared.data import VGGSoundIndex
from shared.encoders import load_melception, melception_inputs
from shared.metrics import (
    Bootstrap,
    ClipMean,
    FrechetDistance,
    InceptionScore,
    MeanKLDivergence,
    dtw_odf,
    format_interval,
    onset_strength,
    wasserstein_odf,
)

SAMPLE_RATE, DURATION = 16_000, 1.92  # TiVA's toy clips
METRICS = ("fid", "mkl", "is", "w_dis", "dtw_dis")


@torch.no_grad()
def melception_features(melception, waves: torch.Tensor, batch: int = 32) -> dict[str, torch.Tensor]:
    parts = [
        melception.features(melception_inputs(waves[i : i + batch], SAMPLE_RATE).unsqueeze(1).clamp(0, 1))
        for i in range(0, len(waves), batch)
    ]
    return {k: torch.cat([p[k] for p in parts]) for k in ("2048", "logits", "logits_unbiased")}


def score(real: dict, fake: dict, ids: list[str], rows: np.ndarray, bootstrap: Bootstrap) -> dict[str, str]:
    """The metrics of the clips `rows` (fake i generated for real clip i), each as `value [lo, hi]`."""
    picked = [ids[i] for i in rows]
    fid = FrechetDistance(real["2048"].shape[1], bootstrap=bootstrap)
    fid.update(real["2048"][rows], real=True, ids=picked)
    fid.update(fake["2048"][rows], real=False, ids=picked)
    mkl = MeanKLDivergence(bootstrap=bootstrap)
    mkl.update(real["logits"][rows], picked, real=True)
    mkl.update(fake["logits"][rows], picked, real=False)
    inception = InceptionScore(bootstrap=bootstrap)
    inception.update(fake["logits_unbiased"][rows], picked)
    out = {}
    for name, metric in (("fid", fid), ("mkl", mkl), ("is", inception)):
        value = metric.compute()
        value = value[0] if isinstance(value, tuple) else value
        out[name] = (float(value), *metric.intervals()[name])
    for name in ("w_dis", "dtw_dis"):
        mean = ClipMean(name, bootstrap=bootstrap)
        mean.update(torch.from_numpy(fake[name][rows]), picked)
        values = mean.compute()
        out[name] = tuple(float(values[k]) for k in (name, f"{name}_lo", f"{name}_hi"))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--melception", required=True, type=Path, help="Melception checkpoint of the metrics")
    parser.add_argument("--root", type=Path, default=Path("data/toy/vggsound"))
    parser.add_argument("--predictions", nargs="*", default=[], help="name=folder of `avgen predict` output")
    parser.add_argument("--sizes", nargs="+", type=int, default=[24, 48, 96, 192, 384, 600])
    args = parser.parse_args(argv)
    records = VGGSoundIndex(args.root).records("test")
    by_class: dict[int, list[int]] = {}
    for i, record in enumerate(records):
        by_class.setdefault(record.label_id, []).append(i)
    classes = sorted(by_class)
    if any(n % len(classes) for n in args.sizes) or max(args.sizes) > len(classes) * min(
        map(len, by_class.values())
    ):
        raise SystemExit(
            f"sizes must be multiples of {len(classes)} up to the test split's {len(records)} clips"
        )
    ids = [r.clip_id for r in records]
    start = time.perf_counter()
    waves = torch.stack([load_audio(r.path, SAMPLE_RATE, duration=DURATION, loop=True) for r in records])
    partner = {
        i: members[(k + 1) % len(members)] for members in by_class.values() for k, i in enumerate(members)
    }
    sets = {"real vs real": waves[[partner[i] for i in range(len(records))]]}
    for item in args.predictions:
        name, folder = item.split("=", 1)
        sets[name] = torch.stack(
            [torch.from_numpy(np.load(Path(folder) / "wave" / f"{i}.npy")).float() for i in ids]
        )
    melception = load_melception(str(args.melception))
    real = melception_features(melception, waves)
    real_odf = [onset_strength(w) for w in waves]
    fakes = {}
    for name, fake_waves in sets.items():
        fake = melception_features(melception, fake_waves)
        odf = [onset_strength(w) for w in fake_waves]
        fake["w_dis"] = np.array([wasserstein_odf(r, g) for r, g in zip(real_odf, odf, strict=True)])
        fake["dtw_dis"] = np.array([dtw_odf(r, g) for r, g in zip(real_odf, odf, strict=True)])
        fakes[name] = fake
    print(f"features and onset curves of {len(records)} clips x {1 + len(sets)} sets: "
          f"{time.perf_counter() - start:.0f} s")  # fmt: skip
    bootstrap = Bootstrap()
    print(f"{'N':>4}  {'set':<14}" + "".join(f"{m:<26}" for m in METRICS))
    for n in args.sizes:
        rows = np.array([i for c in classes for i in by_class[c][: n // len(classes)]])
        for name, fake in fakes.items():
            start = time.perf_counter()
            values = score(real, fake, ids, rows, bootstrap)
            cells = [f"{format_interval(*values[m])} ({values[m][2] - values[m][1]:.3g})" for m in METRICS]
            print(
                f"{n:>4}  {name:<14}"
                + "".join(f"{c:<26}" for c in cells)
                + f"  {time.perf_counter() - start:.1f} s"
            )


if __name__ == "__main__":
    main()
