"""Sampling speed of the Low and Up priors: our batched-CFG cached sampler against Im2Wav's scheme, on the same
weights and the same seed.

    python -m benchmarks.gravo_sampling                                  # toy and paper sizes, batches 1 and 8
    python -m benchmarks.gravo_sampling --sizes toy --repeats 3          # } the runs in projects/gravo/README.md
    python -m benchmarks.gravo_sampling --sizes paper --steps 16 --repeats 2   # }

Ours: `projects.gravo.models.priors.LowPrior.sample` (both guidance branches as one batch of 2B rows through
`shared.transformer.sparse.SparseTransformerLM.sample`, one preallocated KV cache, each layer attending only
its pattern's keys) and `UpPrior.sample` (no guidance). Theirs: `benchmarks/im2wav_scheme.py` `sample_low`
(a deep-copied transformer per branch, two sequential one-token passes per step, caches grown by
`torch.cat`; `RoySheffer/im2wav`, `models/prior/autoregressive.py`) and `sample_up` (the same loop, one
branch). Each prior is written as an official checkpoint from the re-creation with random weights
(`tests.projects.gravo.official_im2wav`) and loaded for ours by `projects.gravo.convert.load_official`, so both
run the same weights; every row draws from its own generator, so both must draw identical tokens (asserted).

Sizes: `toy`, the toy configs (`projects/gravo/configs/base/toy_low.yaml`, `toy_up.yaml`: 1.024-s windows), is
timed over whole windows; `paper` (Im2Wav's Low: width 1024, depth 48, attention width 256, n_ctx 2048, block
32; Up: n_ctx 8192, block 128) is timed over `--steps` steps after `--warmup` untimed ones, from the start of
the window (`start`) and from its middle (`mid`, both samplers primed with n_ctx / 2 tokens as the official
`primed_sample` of a later sliding window is), and extrapolated to a window as n_ctx x the mid stretch's
seconds per step (the per-step cost grows about linearly with the position, through the transpose layers'
keys and Im2Wav's concatenated caches, so the middle's cost is the window's mean; with `start` alone the
estimate misses that growth). Priming costs a long prefill at paper size, so by default only batch 1 of
Low is also timed from the middle (`--mid-batches`) and Up only from the start (`--up-positions`): those
windows are extrapolated from the start's steps. `tiny` is the unit tests' size. After one untimed warm-up
call of each, the two samplers alternate over `--repeats` runs in one process (medians reported). Per 4.096-s clip: the Low windows (with guidance) plus the Up windows
a clip needs, back to back (sliding-window overlap and the VQ-VAE decoder not counted), per batch row.

Others may share the machine: wall and CPU seconds are both given, with the load average. The table goes to
stdout, everything to `--out` (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from benchmarks.im2wav_scheme import sample_low, sample_up
from projects.gravo.convert import load_official
from shared.transformer import Guidance, TokenSampling
from tests.projects.gravo.official_im2wav import (
    TINY,
    build_official,
    official_hps,
    randomize_,
    write_official_checkpoint,
)

CLIP_SAMPLES = 65536  # a 4.096-s clip at 16 kHz
HOPS = {"low": 32, "up": 8}
SIZES = {  # official hps overrides of each prior; whole: timed over whole windows
    "tiny": {
        "low": {**TINY["low"], "n_ctx": 64, "blocks": 8, "sample_length": 2048},
        "up": {**TINY["up"], "n_ctx": 64, "blocks": 4, "sample_length": 512},
        "whole": False,
    },
    "toy": {
        "low": {"l_bins": 128, "n_ctx": 512, "prior_width": 128, "prior_depth": 6, "blocks": 16,
                "sample_length": 16384},
        "up": {"l_bins": 128, "n_ctx": 2048, "prior_width": 128, "prior_depth": 3, "blocks": 16,
               "cond_width": 64, "cond_depth": 4, "sample_length": 16384},
        "whole": True,
    },
    "paper": {"low": {}, "up": {}, "whole": False},
}  # fmt: skip


class StepClock:
    """Wall and CPU clocks at the end of every step's forward: a hook on the output layer `x_out`, which a
    step calls once per branch (`calls_per_step`). Mark k: the logits of the k-th new token are computed."""

    def __init__(self, x_out: nn.Module, calls_per_step: int):
        self.calls_per_step, self.calls, self.marks = calls_per_step, 0, []
        x_out.register_forward_hook(self._hook)

    def _hook(self, *_) -> None:
        self.calls += 1
        if self.calls % self.calls_per_step == 0:
            self.marks.append((time.perf_counter(), time.process_time()))

    def reset(self) -> None:
        self.calls, self.marks = 0, []

    def per_step(self, first: int, count: int) -> tuple[float, float]:
        """Wall and CPU seconds per step from mark `first` to mark `first + count`."""
        (w0, c0), (w1, c1) = self.marks[first], self.marks[first + count]
        return (w1 - w0) / count, (c1 - c0) / count


@dataclass(frozen=True)
class Case:
    kind: str  # "low" or "up"
    batch: int
    prime: int  # tokens already in the window (0: from its start)
    n_tokens: int  # new tokens each run samples
    stretch: tuple[int, int] | None  # (first mark, steps) timed; None: the whole call


def ours_sample(prior, case: Case, inputs: dict, generators) -> torch.Tensor:
    """`LowPrior.sample` / `UpPrior.sample` for a whole window; for a stretch, the same calls of
    `SparseTransformerLM.sample` that they make, cut to `case.n_tokens` new tokens."""
    sampling, prime = TokenSampling(), inputs["prime"]
    whole = case.prime + case.n_tokens == prior.n_ctx
    if case.kind == "low" and whole:
        return prior.sample(inputs["clip"], sampling, generators=generators, prime=prime)
    if case.kind == "up" and whole:
        return prior.sample(inputs["codes_low"], inputs["clip"], sampling, generators=generators, prime=prime)
    if case.kind == "low":
        frames = prior.attend(inputs["clip"])
        cond, null = (prior.condition(frames, prior.n_ctx, null=null) for null in (False, True))
        guidance = Guidance(3.0, null.start, null.x_cond)
    else:
        cond, guidance = prior.condition(inputs["codes_low"], inputs["clip"]), None
    tokens = prior.prior.sample(
        cond.start,
        cond.x_cond,
        case.n_tokens,
        sampling,
        prime=prime,
        guidance=guidance,
        generators=generators,
    )
    return tokens if prime is None else torch.cat([prime, tokens], dim=1)


def scheme_sample(prior, case: Case, inputs: dict, generators) -> torch.Tensor:
    kwargs = dict(generator=generators, n_tokens=case.n_tokens, prime=inputs["prime"])
    if case.kind == "low":
        return sample_low(prior, inputs["clip"], cfg_s=3.0, **kwargs)
    return sample_up(prior, inputs["codes_low"], inputs["clip"], **kwargs)


def build_pair(kind: str, size: str, folder: Path, seed: int) -> tuple[nn.Module, nn.Module]:
    """The official re-creation with random weights and ours loaded from its official-layout file."""
    hps = official_hps(kind, **SIZES[size][kind])
    torch.manual_seed(seed)
    official = randomize_(build_official(hps), seed=seed).eval()
    path = write_official_checkpoint(official, hps, folder / f"{kind}.tar")
    ours = load_official(path, kind)
    path.unlink()
    return official, ours


def make_inputs(kind: str, n_ctx: int, n_codes: int, case: Case, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    frames = max(1, round(30 * n_ctx * HOPS[kind] / 16000))  # CLIP frames at 30 fps over the window
    clip = nn.functional.normalize(torch.randn(case.batch, frames, 512, generator=gen), dim=-1)
    inputs = {"clip": clip, "prime": None, "codes_low": None}
    if case.prime:
        inputs["prime"] = torch.randint(0, n_codes, (case.batch, case.prime), generator=gen)
    if kind == "up":
        inputs["codes_low"] = torch.randint(0, n_codes, (case.batch, n_ctx // 4), generator=gen)
    return inputs


def run_case(pair: tuple[nn.Module, nn.Module], clocks: dict, case: Case, repeats: int, seed: int) -> dict:
    """Both samplers alternately, `repeats` times each: medians of their seconds (per step for a stretch,
    per call for a whole window) and whether they drew identical tokens."""
    official, ours = pair
    inputs = make_inputs(case.kind, ours.n_ctx, ours.prior.n_vocab, case, seed)
    samplers = {"scheme": (scheme_sample, official), "ours": (ours_sample, ours)}
    seconds = {name: [] for name in samplers}
    tokens = {}
    for repeat in range(repeats):
        for name in list(samplers)[:: 1 if repeat % 2 == 0 else -1]:
            sample, model = samplers[name]
            generators = [torch.Generator().manual_seed(seed + row) for row in range(case.batch)]
            clocks[name].reset()
            wall, cpu = time.perf_counter(), time.process_time()
            tokens[name] = sample(model, case, inputs, generators)
            whole = (time.perf_counter() - wall, time.process_time() - cpu)
            seconds[name].append(whole if case.stretch is None else clocks[name].per_step(*case.stretch))
    identical = torch.equal(tokens["scheme"], tokens["ours"])
    assert identical, f"{case}: the two samplers drew different tokens"
    result = {"kind": case.kind, "batch": case.batch, "from": case.prime, "n_ctx": ours.n_ctx,
              "timed": "whole window" if case.stretch is None else f"{case.stretch[1]} steps",
              "tokens_identical": identical, "load": os.getloadavg()[0]}  # fmt: skip
    for name, runs in seconds.items():
        result[f"{name}_wall"] = statistics.median(w for w, _ in runs)
        result[f"{name}_cpu"] = statistics.median(c for _, c in runs)
        result[f"{name}_runs"] = runs
    result["wall_ratio"] = result["scheme_wall"] / result["ours_wall"]
    result["cpu_ratio"] = result["scheme_cpu"] / result["ours_cpu"]
    return result


def window_seconds(rows: list[dict], name: str, clock: str) -> float:
    """A window's seconds: measured (whole), else n_ctx x the deepest stretch's seconds per step."""
    row = max(rows, key=lambda r: r["from"])
    return row[f"{name}_{clock}"] * (1 if row["timed"] == "whole window" else row["n_ctx"])


def clip_summary(results: list[dict]) -> list[dict]:
    """Seconds per 4.096-s clip and batch row: the Low windows plus the Up windows of one clip."""
    out = []
    for size in dict.fromkeys(r["size"] for r in results):
        for batch in dict.fromkeys(r["batch"] for r in results if r["size"] == size):
            rows = [r for r in results if r["size"] == size and r["batch"] == batch]
            entry = {"size": size, "batch": batch}
            for name in ("scheme", "ours"):
                for clock in ("wall", "cpu"):
                    total = 0.0
                    for kind in ("low", "up"):
                        kind_rows = [r for r in rows if r["kind"] == kind]
                        windows = CLIP_SAMPLES / (kind_rows[0]["n_ctx"] * HOPS[kind])
                        total += windows * window_seconds(kind_rows, name, clock) / batch
                    entry[f"{name}_{clock}"] = total
            entry["wall_ratio"] = entry["scheme_wall"] / entry["ours_wall"]
            entry["cpu_ratio"] = entry["scheme_cpu"] / entry["ours_cpu"]
            out.append(entry)
    return out


def cases(kind: str, n_ctx: int, whole: bool, args: argparse.Namespace) -> list[Case]:
    if whole:
        return [Case(kind, batch, 0, n_ctx, None) for batch in args.batches]
    starts = {"start": 0, "mid": n_ctx // 2}
    positions = args.positions if kind == "low" else args.up_positions
    n_tokens = args.warmup + args.steps + 1
    return [
        Case(kind, batch, starts[position], n_tokens, (args.warmup, args.steps))
        for batch in args.batches
        for position in positions
        if position == "start" or batch in args.mid_batches
    ]


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    report = {"threads": torch.get_num_threads(), "torch": torch.__version__, "cpu": cpu_name(),
              "load_start": os.getloadavg(), "args": {k: str(v) for k, v in vars(args).items()}, "rows": []}  # fmt: skip
    print(HEADER, flush=True)
    with tempfile.TemporaryDirectory() as folder, torch.no_grad():
        for size in args.sizes:
            for kind in ("low", "up"):
                pair = build_pair(kind, size, Path(folder), args.seed)
                clocks = {
                    "scheme": StepClock(pair[0].prior.x_out, 2 if kind == "low" else 1),
                    "ours": StepClock(pair[1].prior.x_out, 1),
                }
                run_case(pair, clocks, Case(kind, 1, 0, 2, None), 1, args.seed)  # warm-up, untimed
                for case in cases(kind, pair[1].n_ctx, SIZES[size]["whole"] or args.whole, args):
                    row = {"size": size, **run_case(pair, clocks, case, args.repeats, args.seed)}
                    report["rows"].append(row)
                    print(format_row(row), flush=True)
                del pair, clocks
    report["load_end"] = os.getloadavg()
    report["per_clip"] = clip_summary(report["rows"])
    print_report(report)
    return report


HEADER = (
    f"{'size':<6}{'prior':<6}{'batch':>5}{'from':>6}  {'timed':<13}{'scheme s':>10}{'ours s':>10}{'wall x':>8}"
    f"{'scheme CPU':>11}{'ours CPU':>10}{'CPU x':>7}{'load':>6}  tokens"
)


def format_row(row: dict) -> str:
    return (
        f"{row['size']:<6}{row['kind']:<6}{row['batch']:>5}{row['from']:>6}  {row['timed']:<13}"
        f"{row['scheme_wall']:10.4g}{row['ours_wall']:10.4g}{row['wall_ratio']:8.2f}"
        f"{row['scheme_cpu']:11.4g}{row['ours_cpu']:10.4g}{row['cpu_ratio']:7.2f}{row['load']:6.1f}  "
        f"{'identical' if row['tokens_identical'] else 'DIFFERENT'}"
    )


def print_report(report: dict) -> None:
    print(
        f"\n{report['cpu']}, {report['threads']} threads, torch {report['torch']}; load average "
        f"{report['load_start'][0]:.1f} at the start, {report['load_end'][0]:.1f} at the end; medians of the "
        "runs; s: per step for a stretch, per call for a whole window; x: Im2Wav's scheme / ours"
    )
    print(HEADER)
    for row in report["rows"]:
        print(format_row(row))
    print("\nseconds per 4.096-s clip and batch row (Low with guidance + Up; stretches extrapolated):")
    print(
        f"{'size':<6}{'batch':>5}{'scheme wall':>13}{'ours wall':>11}{'x':>6}{'scheme CPU':>12}{'ours CPU':>10}{'x':>6}"
    )
    for e in report["per_clip"]:
        print(
            f"{e['size']:<6}{e['batch']:>5}{e['scheme_wall']:13.4g}{e['ours_wall']:11.4g}{e['wall_ratio']:6.2f}"
            f"{e['scheme_cpu']:12.4g}{e['ours_cpu']:10.4g}{e['cpu_ratio']:6.2f}"
        )


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()} x {os.cpu_count()}"
    return "cpu"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=["toy", "paper"])
    parser.add_argument(
        "--batches", nargs="+", type=int, default=[1, 8], help="clips (CFG doubles Low's rows)"
    )
    parser.add_argument("--steps", type=int, default=32, help="timed steps of a stretch")
    parser.add_argument("--warmup", type=int, default=4, help="untimed steps before a stretch")
    parser.add_argument("--positions", nargs="+", choices=["start", "mid"], default=["start", "mid"])
    parser.add_argument("--up-positions", nargs="+", choices=["start", "mid"], default=["start"])
    parser.add_argument(
        "--mid-batches", nargs="+", type=int, default=[1], help="the batches also timed from the middle"
    )
    parser.add_argument("--whole", action="store_true", help="time whole windows at every size")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each sampler, alternating")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/gravo/benchmark_sampling.json"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    report = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"written to {args.out}")
    return report


if __name__ == "__main__":
    main()
