"""One sparse-attention layer at Im2Wav's Up-prior length: our block-reshaped kernels against a dense [T, T] mask.

    python -m benchmarks.sparse_attention                     # n_ctx 8192, CPU, 2 threads
    python -m benchmarks.sparse_attention --device cuda
    python -m benchmarks.sparse_attention --n-ctx 2048 --repeats 1   # a quick check

The layer is `shared.transformer.sparse.SparseAttention` at the Up prior's size (Im2Wav, arXiv:2211.03089;
Jukebox, arXiv:2005.00341): width 1024, attention width 256, 1 head, block_ctx 128, batch 1, float32. For
each pattern it times the attention itself, from q, k, v [1, 1, T, 256] to the output, forward alone (no
autograd) and forward + backward, in three forms that compute the same thing:

- kernel: `SparseAttention._blocked`, SDPA on the sequence cut into blocks (what the model runs);
- dense softmax: the official form (`RoySheffer/im2wav`, `models/transformer/factored_attention.py`,
  `_attn` as it would run the pattern on the whole sequence): q k^T scaled, w * mask - 1e9 (1 - mask) in
  float32, softmax, times v; the [T, T] mask is built once, outside the timing;
- SDPA + mask: `F.scaled_dot_product_attention` with the same [T, T] boolean mask.

The projections `c_attn` and `c_proj`, the same for every form, are timed apart, so a whole layer is their
time plus the attention's. Each figure is the best of `--repeats` runs after one warm-up, printed as wall
(CPU) ms; the JSON also keeps the 1-minute load average (others may share the machine). The largest
difference of each dense form from the kernel is printed as a check; prev_block's block 0, which attends
to no earlier key, is left out of the official dense form's check (it spreads those rows over every key;
ours gives 0 there, as the official blocked code does, and so does SDPA on rows with no key, in torch 2.11).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from shared.transformer.sparse import SparseAttention

PATTERNS = ("block", "transpose", "prev_block")


def dense_mask(pattern: str, t: int, b: int, device: torch.device) -> torch.Tensor:
    """[T, T] bool: query i may attend key j."""
    i, j = torch.arange(t, device=device)[:, None], torch.arange(t, device=device)[None]
    if pattern == "block":
        return (j <= i) & (j // b == i // b)
    if pattern == "transpose":
        return (j <= i) & (j % b == i % b)
    return j // b == i // b - 1  # prev_block


def dense_softmax(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    w = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    mask = mask.float()
    w = (w * mask - 1e9 * (1 - mask)).softmax(-1)
    return w @ v


def seconds(fn: Callable[[], object], sync: Callable[[], None], repeats: int) -> dict:
    fn()
    runs = []
    for _ in range(repeats):
        sync()
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        sync()
        runs.append((time.perf_counter() - wall, time.process_time() - cpu))
    wall, cpu = min(runs)
    return {"wall_s": wall, "cpu_s": cpu, "load": os.getloadavg()[0]}


def cell(timing: dict) -> str:
    return f"{timing['wall_s'] * 1e3:.1f} ({timing['cpu_s'] * 1e3:.1f})"


def forward_backward(attend: Callable[..., torch.Tensor], qkv: list[torch.Tensor]) -> Callable[[], None]:
    def run() -> None:
        leaves = [z.detach().requires_grad_() for z in qkv]
        attend(*leaves).sum().backward()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-ctx", type=int, default=8192)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--attn-width", type=int, default=256)
    parser.add_argument("--block-ctx", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    torch.manual_seed(0)
    t, b = args.n_ctx, args.block_ctx
    x = torch.randn(1, t, args.width, device=device)
    report = {"args": {k: str(v) for k, v in vars(args).items()}, "load_start": os.getloadavg(), "rows": []}

    layer = SparseAttention(args.width, args.attn_width, 1, "block", b, 0.0).to(device)
    with torch.no_grad():
        qkv = [
            z.contiguous() for z in layer.c_attn(x).view(1, t, 3, 1, args.attn_width).permute(2, 0, 3, 1, 4)
        ]
        projections = seconds(
            lambda: layer.c_proj(layer.c_attn(x)[..., : args.attn_width]), sync, args.repeats
        )
    report["projections_forward"] = projections

    print(
        f"n_ctx {t}, width {args.width}, attn width {args.attn_width}, block_ctx {b}, {device}, {args.threads} threads"
    )
    print(f"c_attn + c_proj forward (every pattern): {cell(projections)} ms, wall (CPU)")
    print(
        f"{'pattern':<11} {'pass':<8} {'kernel ms':>17} {'dense softmax ms':>17} {'SDPA+mask ms':>17} {'dense/kernel':>12}"
    )
    for pattern in PATTERNS:
        attn = SparseAttention(args.width, args.attn_width, 1, pattern, b, 0.0).to(device)
        mask = dense_mask(pattern, t, b, device)
        forms = {
            "kernel": lambda q, k, v, attn=attn: attn._blocked(q, k, v, dropout=0.0),
            "dense softmax": lambda q, k, v, mask=mask: dense_softmax(q, k, v, mask),
            "SDPA + mask": lambda q, k, v, mask=mask: F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
        }
        with torch.no_grad():
            outputs = {name: attend(*qkv) for name, attend in forms.items()}
        skipped = b if pattern == "prev_block" else 0  # the official dense form's rows with no key
        diffs = {
            name: (outputs[name] - outputs["kernel"])[:, :, first:].abs().max().item()
            for name, first in (("dense softmax", skipped), ("SDPA + mask", 0))
        }
        del outputs
        print(f"{pattern:<11} max |dense - kernel|: " + ", ".join(f"{n} {d:.1e}" for n, d in diffs.items()))
        for pass_name in ("forward", "fwd+bwd"):
            times = {}
            for name, attend in forms.items():
                if pass_name == "forward":
                    with torch.no_grad():
                        times[name] = seconds(lambda attend=attend: attend(*qkv), sync, args.repeats)
                else:
                    times[name] = seconds(forward_backward(attend, qkv), sync, args.repeats)
            ratio = {key: times["dense softmax"][key] / times["kernel"][key] for key in ("wall_s", "cpu_s")}
            cells = " ".join(f"{cell(times[name]):>17}" for name in forms)
            print(f"{pattern:<11} {pass_name:<8} {cells} {ratio['wall_s']:>7.1f}x ({ratio['cpu_s']:.1f}x)")
            report["rows"].append(
                {"pattern": pattern, "pass": pass_name, "times": times, "max_abs_diff": diffs}
            )
    report["load_end"] = os.getloadavg()
    print(
        f"1-minute load average: {report['load_start'][0]:.2f} at start, {report['load_end'][0]:.2f} at end"
    )
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
