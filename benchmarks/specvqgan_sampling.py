"""Time to sample one 10-s clip (265 codes) with the paper-size SpecVQGAN transformer: KV cache vs recompute.

    python benchmarks/specvqgan_sampling.py --feats 212 --samples 1 --threads 2 [--device cuda] [--recompute-steps 20]

The recompute loop is the official sampler's method (a full forward over the whole sequence for every
code). On a slow machine `--recompute-steps` times only the first steps of it and extrapolates the rest
from the measured per-step cost as a function of length (it grows linearly with the sequence), which the
output says. Weights are random (timing does not depend on them); both paths use the same model.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from projects.specvqgan.models import SpectrogramVQGAN
from projects.specvqgan.models.sampler import VisualCodeSampler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feats", type=int, default=212)
    parser.add_argument("--samples", type=int, default=1, help="clips sampled together (batch)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--recompute-steps", type=int, default=None, help="time only this many recompute steps"
    )
    parser.add_argument("--top-k", type=int, default=512)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    codebook = SpectrogramVQGAN(
        1024, embed_dim=8, ch=8, num_res_blocks=1, z_channels=8, norm_groups=4
    )  # unused
    sampler = VisualCodeSampler(codebook, feat_dim=2048, n_feats=args.feats).to(args.device).eval()
    feats = torch.randn(args.samples, args.feats, 2048, device=args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def timed(**kwargs) -> tuple[float, torch.Tensor]:
        sync()
        start = time.perf_counter()
        codes = sampler.sample(
            feats, top_k=args.top_k, generator=torch.Generator(args.device).manual_seed(0), **kwargs
        )
        sync()
        return time.perf_counter() - start, codes

    timed(n_columns=1)  # warm-up
    cached_s, cached = timed()
    result = {"device": args.device, "threads": torch.get_num_threads(), "feats": args.feats,
              "samples": args.samples, "cached_s": round(cached_s, 3)}  # fmt: skip
    if args.recompute_steps is None:
        recompute_s, recomputed = timed(use_cache=False)
        result["recompute_s"] = round(recompute_s, 3)
        result["tokens_identical"] = bool(torch.equal(cached, recomputed))
    else:
        # per-step cost of a full forward at the first and at a later length, extrapolated linearly
        prefix = sampler.condition(feats)
        costs = {}
        with torch.no_grad():
            for n in (1, args.recompute_steps):
                tokens = cached[:, :n]
                sync()
                start = time.perf_counter()
                sampler.gpt(tokens, prefix)
                sync()
                costs[n] = time.perf_counter() - start
        slope = (costs[args.recompute_steps] - costs[1]) / (args.recompute_steps - 1)
        estimate = sum(costs[1] + slope * (n - 1) for n in range(1, 266))
        result["recompute_s_estimated"] = round(estimate, 3)
        result["recompute_note"] = f"extrapolated from full forwards at lengths 1 and {args.recompute_steps}"
    recompute = result.get("recompute_s", result.get("recompute_s_estimated"))
    result["speedup"] = round(recompute / cached_s, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
