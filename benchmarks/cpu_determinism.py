"""What makes a toy CPU run give other numbers on another machine: the same computations in fresh processes
under each intra-op thread count and each vector instruction set ATen can dispatch to, compared bit for bit.

    python benchmarks/cpu_determinism.py [--threads 1 2] [--capabilities default avx2]

Each configuration runs in its own process (`ATEN_CPU_CAPABILITY` acts only at start-up), twice, and computes:
seeded noise (`torch.randn`, `torch.rand`, dropout), single ops (a convolution and its gradients, a matmul, a
long sum, GroupNorm, scaled-dot-product attention), and one training step's gradients of the toy TiVA
generator (S + G at `projects/tiva/configs/base/toy_tiva.yaml`'s sizes) and of a small SpecVQGAN codebook.
The table gives, for every configuration against the first, how many tensors of each group differ and by how
much at most (relative to the group's largest magnitude); a configuration against its own repeat must be 0.

A difference of 1e-7 in one gradient is enough: training amplifies it step after step until two runs reach
other weights, which is why `avgen pipeline` pins the thread count (`--threads`) and writes the machine it ran
on beside every stage (`machine.json`). The instruction set cannot be pinned from inside the process for
every library (oneDNN and MKL choose their own kernels); `ATEN_CPU_CAPABILITY=avx2` pins ATen's own kernels.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

TOY_UNET = {
    "sample_size": [48, 16],
    "in_channels": 5,
    "out_channels": 5,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "cross_attention_dim": 64,
    "attention_head_dim": 8,
    "norm_num_groups": 8,
}


def gradients(model: torch.nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    loss.backward()
    return {"loss": loss.detach(), **{n: p.grad for n, p in model.named_parameters() if p.grad is not None}}


def noise() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {
        "randn": torch.randn(4096, generator=torch.Generator().manual_seed(0)),
        "rand": torch.rand(4096, generator=torch.Generator().manual_seed(0)),
        "dropout": F.dropout(torch.ones(4096), 0.1, training=True),
    }


def single_ops() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(8, 32, 48, 16, generator=g, requires_grad=True)
    w = torch.randn(64, 32, 3, 3, generator=g, requires_grad=True)
    y = F.conv2d(x, w, padding=1)
    y.square().mean().backward()
    q = torch.randn(8, 4, 384, 16, generator=g)
    return {
        "conv": y.detach(),
        "conv_grad_input": x.grad,
        "conv_grad_weight": w.grad,
        "matmul": torch.randn(512, 256, generator=g) @ torch.randn(256, 384, generator=g),
        "sum": torch.randn(8, 100_000, generator=g).sum(1),
        "group_norm": F.group_norm(torch.randn(8, 64, 24, 8, generator=g), 8),
        "attention": F.scaled_dot_product_attention(q, q.flip(2), q.roll(1, 2)),
    }


def tiva_step() -> dict[str, torch.Tensor]:
    from projects.tiva.models import LayoutConditionedUNet, SemanticEncoder

    torch.manual_seed(0)
    unet, semantic = LayoutConditionedUNet(TOY_UNET), SemanticEncoder(64, 64)
    g = torch.Generator().manual_seed(1)
    latents, layout = torch.randn(8, 4, 48, 16, generator=g), torch.rand(8, 1, 48, 16, generator=g)
    t, cls = torch.randint(0, 1000, (8,), generator=g), torch.randn(8, 19, 3, 64, generator=g)
    target = torch.randn(8, 4, 48, 16, generator=g)
    model = torch.nn.ModuleDict({"unet": unet, "semantic": semantic})
    return gradients(model, F.mse_loss(unet(latents, layout, t, semantic(cls)), target))


def codebook_step() -> dict[str, torch.Tensor]:
    from projects.specvqgan.models import SpectrogramVQGAN

    torch.manual_seed(0)
    model = SpectrogramVQGAN(
        n_codes=32,
        embed_dim=64,
        ch=16,
        ch_mult=(1, 1, 2, 2, 4),
        num_res_blocks=1,
        z_channels=64,
        norm_groups=8,
    )
    mel = torch.rand(8, 1, 80, 160, generator=torch.Generator().manual_seed(1)) * 2 - 1
    reconstruction, quantized = model(mel)
    return gradients(model, (reconstruction - mel).abs().mean() + quantized.loss)


GROUPS = {"noise": noise, "ops": single_ops, "tiva step": tiva_step, "codebook step": codebook_step}


def compute(out: str, threads: int) -> None:
    """In the child: every group's tensors with `threads` intra-op threads, saved to `out`."""
    torch.set_num_threads(threads)
    result = {"capability": torch.backends.cpu.get_cpu_capability()}
    result |= {name: fn() for name, fn in GROUPS.items()}
    torch.save(result, out)


def compare(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> str:
    """How many tensors differ, and the largest difference relative to the group's largest value (a gradient
    that is zero in exact arithmetic, such as an attention key bias's, would make a per-tensor ratio huge)."""
    scale = max(float(v.abs().max()) for v in a.values())
    differ = {k: float((a[k] - b[k]).abs().max()) / scale for k in a if not torch.equal(a[k], b[k])}
    worst = max(differ, key=lambda k: differ[k], default=None)
    return f"{len(differ)}/{len(a)}" + (f" (max {differ[worst]:.1e})" if worst else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--capabilities", nargs="+", default=["default", "avx2"])
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)  # out file, threads
    args = parser.parse_args()
    if args.child:
        compute(args.child[0], int(args.child[1]))
        return
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for capability in args.capabilities:
            env = dict(os.environ)
            env.pop("ATEN_CPU_CAPABILITY", None)
            if capability != "default":
                env["ATEN_CPU_CAPABILITY"] = capability
            for threads in args.threads:
                for repeat in (0, 1):
                    out = str(Path(tmp) / f"{capability}_{threads}_{repeat}.pt")
                    cmd = [sys.executable, __file__, "--child", out, str(threads)]
                    subprocess.run(cmd, env=env, check=True, timeout=600)
                    runs[(capability, threads, repeat)] = torch.load(out)
    first = runs[(args.capabilities[0], args.threads[0], 0)]
    print(
        f"{torch.__version__}; tensors that differ (of all), the largest difference relative to the group's largest value"
    )
    print(f"{'configuration':<34}" + "".join(f"{group:<22}" for group in GROUPS))
    for (capability, threads, repeat), run in runs.items():
        label = f"{capability} ({run['capability']}), {threads} thr" + (", repeat" if repeat else "")
        base = runs[(capability, threads, 0)] if repeat else first
        print(f"{label:<34}" + "".join(f"{compare(base[g], run[g]):<22}" for g in GROUPS))
    print("(a repeat is compared with its own configuration's first run, the others with the first row)")


if __name__ == "__main__":
    main()
