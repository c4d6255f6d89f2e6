"""Sampling 10-s clips (265 codes each) with the paper-size SpecVQGAN transformer: KV cache against the
official recompute loop, at batch 1 and at the official evaluation's batch 32, against this machine's peaks.

    python benchmarks/specvqgan_sampling.py --threads 2                       # batches 1 and 32, fp32 and bf16
    python benchmarks/specvqgan_sampling.py --device cuda --batches 1 32      # adds the CUDA-graph decoder
    python benchmarks/specvqgan_sampling.py --layers 2 --batches 1 2 --weights fp32 bf16   # a quick check

The model is `VisualCodeSampler` at paper size (arXiv:2110.08791 sec. 3.2; 24 layers, 16 heads, width 1024,
212 features: 306,995,200 parameters) with random weights; each row of a batch is one item of the
evaluation protocol (`sample_items`, its own random stream, top-k 512), so row 0 at batch 32 is the item
sampled alone at batch 1 and must draw the same codes.

- Cached: `decode="cache"` (and "cuda_graph" on a CUDA device). Its prefill over the 212 features is
  timed apart, so the decode steps' achieved GFLOP/s and GB/s of weights read can be set against this
  machine's peaks, measured in the same run with the same threads: a 4096^3 matmul and a sum over 1 GiB.
  A decode step reads every weight once whatever the batch, so batch 1 is bound by memory bandwidth;
  a batch also reads its KV cache (reported apart).
- Recompute: `decode="recompute"`, the official sampler's method (`v-iashin/SpecVQGAN`,
  `specvqgan/models/cond_transformer.py`: a full forward over the whole sequence for every code; the
  official one even pads it to 476 positions, so it costs more than this). Its cost is always estimated
  from three timed full forwards (after 0, 132 and 264 codes, a quadratic in the length summed over the
  265 steps), and the whole loop is also run and timed when that estimate is under `--max-recompute-s`
  (minutes, not hours); the output says which. The forward after 264 codes also yields every position's
  logits, so its draws with the items' random numbers are checked against the cached codes (teacher
  forcing) whether or not the whole loop ran.
- `--weights bf16`: the whole model (weights, activations and KV cache) in bfloat16; `int8-dynamic`: the
  Linears quantised by `torch.ao.quantization.quantize_dynamic` (int8 weights, activations quantised per
  call; deprecated in torch 2.x, measured here only for its figure). For each, the cached codes are compared
  with fp32's, free-running (the first difference changes everything after it) and teacher-forced on
  fp32's codes (the share of steps whose draw is the same, and the largest logit difference). Random
  weights give flat next-code distributions, so these agreements are an indication, not a trained
  model's figure.

Others may share the machine: every timing carries its wall and CPU seconds and the 1-minute load average
when it ended. The table goes to stdout, everything to `--out` (JSON).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from projects.specvqgan.models import SpectrogramVQGAN
from projects.specvqgan.models.sampler import CodeSampling, VisualCodeSampler
from shared.transformer import item_generators, uniforms

RECOMPUTE_PROBES = (0, 132, 264)  # codes already drawn when the timed full forwards run


def timed(fn: Callable[[], object], sync: Callable[[], None]) -> tuple[object, dict]:
    sync()
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    sync()
    return result, {
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
        "load": os.getloadavg()[0],
    }


def best_seconds(fn: Callable[[], object], sync: Callable[[], None], repeats: int = 3) -> float:
    fn()
    return min(timed(fn, sync)[1]["wall_s"] for _ in range(repeats))


def machine_peaks(device: torch.device, sync: Callable[[], None], with_bf16: bool) -> dict:
    """Best of three: a 4096^3 matmul (GFLOP/s; fp32, and bf16 when asked) and a sum over 1 GiB (GB/s)."""
    n, peaks = 4096, {}
    for name, dtype in [("fp32", torch.float32)] + [("bf16", torch.bfloat16)] * with_bf16:
        a = torch.randn(n, n, device=device).to(dtype)
        peaks[f"matmul_{name}_gflops"] = 2 * n**3 / best_seconds(lambda a=a: a @ a, sync) / 1e9
    x = torch.randn(2**28, device=device)
    peaks["read_gbs"] = x.numel() * x.element_size() / best_seconds(x.sum, sync) / 1e9
    return peaks


def with_weights(sampler: VisualCodeSampler, weights: str) -> VisualCodeSampler:
    if weights == "fp32":
        return sampler
    other = copy.deepcopy(sampler)
    if weights == "bf16":
        return other.to(torch.bfloat16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
        other.gpt = torch.ao.quantization.quantize_dynamic(other.gpt, {nn.Linear}, dtype=torch.qint8)
    return other


def step_costs(base: VisualCodeSampler, weights: str) -> dict:
    """Per decode step: the matmul weights (each read once a step, 2 FLOP per weight per item), the bytes
    all weights take in `weights`, and attention FLOP / KV bytes per item per attended position."""
    gpt = base.gpt
    matmul = sum(m.weight.numel() for m in gpt.modules() if isinstance(m, nn.Linear))
    others = sum(p.numel() for name, p in gpt.named_parameters() if name.startswith(("blocks", "ln_f")))
    others -= matmul - gpt.head.weight.numel()  # the blocks' biases and LayerNorms, and ln_f
    matmul_bytes, other_bytes = {"fp32": (4, 4), "bf16": (2, 2), "int8-dynamic": (1, 4)}[weights]
    return {
        "matmul_weights": matmul,
        "weight_bytes": matmul * matmul_bytes + others * other_bytes,
        "attention_flop_per_position": 4 * gpt.n_layer * gpt.n_embd,
        "kv_bytes_per_position": 2 * gpt.n_layer * gpt.n_embd * other_bytes,
    }


def draws_from(logits: torch.Tensor, random: torch.Tensor, sampling: CodeSampling) -> torch.Tensor:
    """Every position's logits [B, 265, V] and the items' random numbers [B, 265] -> the codes drawn."""
    return sampling.next_token(logits.flatten(0, 1), random.flatten()).view(random.shape)


def decode_figures(
    run: dict, costs: dict, prefix_length: int, n_codes: int, peaks: dict, weights: str
) -> dict:
    """Achieved rates of the decode steps (the whole call less the prefill) against the machine's peaks."""
    steps, batch = n_codes - 1, run["batch"]
    attended = sum(prefix_length + i for i in range(1, n_codes))  # positions the steps' attention reads
    decode_s = run["wall_s"] - run["prefill_s"]
    flop = batch * (2 * costs["matmul_weights"] * steps + costs["attention_flop_per_position"] * attended)
    weight_bytes = costs["weight_bytes"] * steps
    kv_bytes = batch * costs["kv_bytes_per_position"] * attended
    peak = peaks.get(f"matmul_{weights}_gflops")
    return {
        "decode_s": decode_s,
        "step_ms": decode_s / steps * 1e3,
        "gflops": flop / decode_s / 1e9,
        "gflops_of_peak": flop / decode_s / 1e9 / peak if peak else None,
        "weights_gbs": weight_bytes / decode_s / 1e9,
        "kv_gbs": kv_bytes / decode_s / 1e9,
        "read_of_peak": (weight_bytes + kv_bytes) / decode_s / 1e9 / peaks["read_gbs"],
    }


class Bench:
    """One batch of items (keys clip/0 ... clip/B-1, features, random numbers) and the timings on it."""

    def __init__(self, base: VisualCodeSampler, batch: int, args: argparse.Namespace, peaks: dict):
        self.base, self.batch, self.args, self.peaks = base, batch, args, peaks
        self.device = base.gpt.pos_emb.device
        self.sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        self.sampling = CodeSampling(top_k=args.top_k)
        self.keys = [f"clip/{i}" for i in range(batch)]
        features = torch.randn(batch, args.feats, 2048, generator=torch.Generator().manual_seed(1))
        self.feats = features.to(self.device)
        self.n_codes, self.prefix_length = base.n_tokens, base.prefix_length
        self.random = uniforms(
            item_generators(self.sampling.seed, self.keys), batch, self.n_codes, self.device
        )

    def sample(self, sampler: VisualCodeSampler, decode: str, n_columns: int | None = None) -> torch.Tensor:
        feats = self.feats.to(sampler.gpt.pos_emb.dtype)
        ((_, codes),) = sampler.sample_items(
            feats, None, self.keys, self.sampling, n_columns=n_columns, decode=decode
        )
        return codes

    def prefill_seconds(self, sampler: VisualCodeSampler) -> float:
        feats = self.feats.to(sampler.gpt.pos_emb.dtype)
        prefill = lambda: sampler.gpt(None, sampler.condition(feats), sampler.gpt.new_cache(self.batch))  # noqa: E731
        return min(timed(prefill, self.sync)[1]["wall_s"] for _ in range(2))

    def cached(self, sampler: VisualCodeSampler, weights: str, decode: str) -> tuple[torch.Tensor, dict]:
        self.sample(sampler, decode, n_columns=1)  # warm-up
        prefill_s = self.prefill_seconds(sampler)
        codes, clock = timed(lambda: self.sample(sampler, decode), self.sync)
        run = {
            "batch": self.batch,
            "path": f"cached {weights}",
            "decode": decode,
            **clock,
            "prefill_s": prefill_s,
        }
        costs = step_costs(self.base, weights)
        run.update(decode_figures(run, costs, self.prefix_length, self.n_codes, self.peaks, weights))
        return codes, run

    def recompute(self, cached: torch.Tensor) -> tuple[list[dict], torch.Tensor]:
        """The official loop's cost from three full forwards (and the whole loop when that is under the
        limit) and the teacher-forced check of the cached codes -> (runs, every code's logits [B, 265, V])."""
        prefix = self.base.condition(self.feats)
        seconds = {}
        for drawn in RECOMPUTE_PROBES:
            out, clock = timed(lambda drawn=drawn: self.base.gpt(cached[:, :drawn], prefix), self.sync)
            seconds[drawn] = clock["wall_s"]
        logits = out[:, self.prefix_length - 1 :].float()  # the last probe's: every code's logits
        fit = np.polyfit(list(seconds), list(seconds.values()), 2)
        estimate = float(np.polyval(fit, np.arange(self.n_codes)).sum())
        draws = draws_from(logits, self.random, self.sampling)
        runs = [{
            "batch": self.batch, "path": "recompute, estimated", "wall_s": estimate, "load": os.getloadavg()[0],
            "forward_s": {f"after {k} codes": v for k, v in seconds.items()},
            "step_ms": estimate / self.n_codes * 1e3,
            "teacher_forced_equal_cached": float((draws == cached).float().mean()),
        }]  # fmt: skip
        if estimate <= self.args.max_recompute_s:
            codes, clock = timed(lambda: self.sample(self.base, "recompute"), self.sync)
            runs.append({
                "batch": self.batch, "path": "recompute, whole loop", **clock,
                "step_ms": clock["wall_s"] / self.n_codes * 1e3, "tokens_equal_cached": bool(torch.equal(codes, cached)),
            })  # fmt: skip
        return runs, logits

    def runs(self, first_item_codes: list[int] | None) -> list[dict]:
        """Cached runs for every weights and decoder, the recompute runs after fp32's; first_item_codes:
        the codes item clip/0 drew at the first batch size (None at the first), which it must draw again."""
        decoders = ["cache", "cuda_graph"] if self.device.type == "cuda" else ["cache"]
        runs, reference, reference_logits = [], None, None
        for weights in self.args.weights:
            sampler = with_weights(self.base, weights)
            for decode in decoders:
                codes, run = self.cached(sampler, weights, decode)
                if reference is None:
                    reference = codes
                    if first_item_codes is not None:
                        run["row0_equals_first_batch"] = codes[0].tolist() == first_item_codes
                else:
                    run["tokens_equal_fp32"] = float((codes == reference).float().mean())
                    differ = (codes != reference).any(0).nonzero()
                    run["first_difference"] = int(differ[0]) if len(differ) else None
                if weights != "fp32" and decode == "cache":
                    logits = sampler(reference, self.feats.to(sampler.gpt.pos_emb.dtype)).float()
                    draws = draws_from(logits, self.random, self.sampling)
                    run["teacher_forced_equal_fp32"] = float((draws == reference).float().mean())
                    scale = reference_logits.abs().max()
                    run["max_logit_difference_rel"] = float((logits - reference_logits).abs().max() / scale)
                run["codes_item0"] = codes[0].tolist()
                runs.append(run)
                print(row(run), flush=True)
            if weights == "fp32":
                recompute, reference_logits = self.recompute(reference)
                runs += recompute
                print("\n".join(map(row, recompute)), flush=True)
            del sampler
        cached_s = runs[0]["wall_s"]
        for run in runs:
            if run["path"].startswith("recompute"):
                run["speedup_over_cached_fp32"] = run["wall_s"] / cached_s
        return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feats", type=int, default=212)
    parser.add_argument("--layers", type=int, default=24, help="fewer for a quick check of the script")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument(
        "--weights", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "int8-dynamic"]
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--max-recompute-s", type=float, default=1800, help="run the whole loop below this")
    parser.add_argument("--top-k", type=int, default=512)
    parser.add_argument("--out", default="runs/specvqgan/benchmark_sampling.json")
    args = parser.parse_args()
    if args.weights[0] != "fp32":
        parser.error("--weights starts with fp32: the other weights are compared with its codes")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    codebook = SpectrogramVQGAN(1024, embed_dim=8, ch=8, num_res_blocks=1, z_channels=8, norm_groups=4)
    base = (
        VisualCodeSampler(codebook, feat_dim=2048, n_feats=args.feats, n_layer=args.layers).to(device).eval()
    )
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "feats": args.feats, "layers": args.layers,
        "parameters": sum(p.numel() for p in [*base.gpt.parameters(), *base.embedder.parameters()]),
        "load_start": os.getloadavg(), "peaks": machine_peaks(device, sync, "bf16" in args.weights), "runs": [],
    }  # fmt: skip
    print(
        "peaks: " + ", ".join(f"{k} {v:.1f}" for k, v in report["peaks"].items()),
        HEADER,
        sep="\n",
        flush=True,
    )
    with torch.no_grad():
        for batch in args.batches:
            first = report["runs"][0]["codes_item0"] if report["runs"] else None
            report["runs"] += Bench(base, batch, args, report["peaks"]).runs(first)
    report["load_end"] = os.getloadavg()
    print("\nall runs (speedup: the recompute loop's time over the batch's cached fp32 time):")
    print_table(report)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"written to {args.out}")


HEADER = (
    f"{'batch':>5} {'path':<22} {'decode':<10} {'wall s':>8} {'CPU s':>7} {'load':>5} {'s/clip':>7} "
    f"{'step ms':>8} {'GFLOP/s':>13} {'weights GB/s':>12} {'read/peak':>9}  tokens"
)


def row(run: dict) -> str:
    cell = lambda key, spec: format(run[key], spec) if run.get(key) is not None else ""  # noqa: E731
    gflops = cell("gflops", ".1f") + (f" ({run['gflops_of_peak']:.0%})" if run.get("gflops_of_peak") else "")
    tokens = "; ".join(
        f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
        for k, v in run.items()
        if k.startswith(("tokens_", "teacher_", "first_", "row0_", "max_logit", "speedup"))
    )
    return (
        f"{run['batch']:>5} {run['path']:<22} {run.get('decode', ''):<10} {run['wall_s']:8.1f} "
        f"{cell('cpu_s', '.1f'):>7} {run['load']:5.1f} {run['wall_s'] / run['batch']:7.2f} "
        f"{run['step_ms']:8.1f} {gflops:>13} {cell('weights_gbs', '.1f'):>12} {cell('read_of_peak', '.0%'):>9}  "
        f"{tokens}"
    )


def print_table(report: dict) -> None:
    print(
        f"{report['device']}, {report['threads']} threads, torch {report['torch']}; load average "
        f"{report['load_start'][0]:.1f} at the start, {report['load_end'][0]:.1f} at the end"
    )
    print("peaks: " + ", ".join(f"{k} {v:.1f}" for k, v in report["peaks"].items()))
    print(HEADER)
    for run in report["runs"]:
        print(row(run))


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()} x {os.cpu_count()}"
    return "cpu"


if __name__ == "__main__":
    main()
