"""The classification columns of WavBriVL's Table 1 (arXiv:2303.04585, sec. 4.1, "MC"): one command, one row per
audio embedding, every row through the same probes on one dataset's own folds.

    python -m projects.wavbrivl.table1 --dataset esc50 --root /data/ESC-50-master \\
        --run runs/wavbrivl/toy_audio_tower/default --random-init --mel --out esc50.json

The rows, each an embedding `wav [B, T] at 16 kHz -> [B, E]` given to `projects.wavbrivl.probes.probe_embedding`:

- `--run PATH` (repeatable): the audio tower of a WavBriVL audio-tower run folder (its best.ckpt, else last.ckpt)
  or of a checkpoint file of that stage (`models.audio_tower.load_audio_tower`), named by the path as given:
  the paper's "WavBriVL" row;
- `--random-init`: a tower of the first run's architecture with random weights (`pipeline.random_init_tower`):
  what training added (not in the paper);
- `--wav2clip PATH`: Wav2CLIP (arXiv:2110.11499) from the official `Wav2CLIP.pt` of
  `descriptinc/lyrebird-wav2clip` (`shared.encoders.load_wav2clip`): the paper's "Wav2CLIP" row;
- `--mel`: each log-mel band's mean and std over time (`shared.encoders.MelStatisticsEmbedding`): what the
  spectral envelope alone gives (not in the paper).

The paper's "Supervise", "OpenL3" and "SOTA" rows are other works' figures and its "ZS" row needs BriVL's text
tower; none of them is computed here.

The datasets (`projects.wavbrivl.data_downstream`), decoded to mono 16 kHz:

- `esc50`: the ESC-50 release folder (`meta/esc50.csv`, `audio/`): 5-fold cross-validation, accuracy;
- `urbansound8k`: the UrbanSound8K folder (`metadata/UrbanSound8K.csv`, `audio/fold<k>/`): 10-fold
  cross-validation, accuracy;
- `vggsound`: a VGGSound folder as `shared.data.indexes.VGGSoundIndex` reads it (`vggsound.csv`, `video/`): the
  probes train on every clip outside the test split and are scored on it by mAP (macro average precision).

Accuracy is the mean over the test folds with a 95 % bootstrap interval over clips; mAP has no interval. The
probes are `probes.ProbeSettings` (`--probes`, `--epochs`, `--lr`, `--probe-batch-size` change them for every row
alike); embedding and probe training run on `--device`. Printed: a markdown table, one row per embedding and one
of chance levels (`evaluate.format_rows`); `--out` writes a JSON file with every value (per fold, mean,
interval, chance) and the settings.

Table 1 on the real datasets (a GPU: `--device cuda`; `--workers` decode in parallel):

    python -m projects.wavbrivl.table1 --dataset esc50 --root /data/ESC-50-master \\
        --run runs/wavbrivl/audio_tower/default --random-init --wav2clip Wav2CLIP.pt --mel \\
        --device cuda --workers 8 --out table1_esc50.json
    python -m projects.wavbrivl.table1 --dataset urbansound8k --root /data/UrbanSound8K \\
        --run runs/wavbrivl/audio_tower/default --wav2clip Wav2CLIP.pt --mel --device cuda --workers 8 \\
        --out table1_us8k.json
    python -m projects.wavbrivl.table1 --dataset vggsound --root /data/vggsound \\
        --run runs/wavbrivl/audio_tower/default --wav2clip Wav2CLIP.pt --mel --device cuda --workers 8 \\
        --out table1_vggsound.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from projects.wavbrivl.data_downstream import FOLDED_DATASETS, FoldedAudioDataModule, FoldedCSV, VGGSoundFolds
from projects.wavbrivl.evaluate import EvaluationResult, format_rows
from projects.wavbrivl.models.audio_tower import load_audio_tower
from projects.wavbrivl.pipeline import random_init_tower
from projects.wavbrivl.probes import ProbeResult, ProbeSettings, probe_embedding
from shared.data.indexes import VGGSoundIndex
from shared.encoders import MelStatisticsEmbedding, load_wav2clip
from shared.metrics.bootstrap import Bootstrap
from shared.runs import UserError

DATASETS = (*FOLDED_DATASETS, "vggsound")
PAPER = "WavBriVL, arXiv:2303.04585, Table 1 (MC)"


def load_dataset(name: str, root: Path) -> tuple[FoldedCSV | VGGSoundFolds, list[str] | None, str]:
    """(the dataset's clips and folds, the test folds (None: each in turn), the metric)."""
    if not root.is_dir():
        raise UserError(f"{root}: no such folder (--root of {name})")
    if name != "vggsound":
        return FOLDED_DATASETS[name](root), None, "acc"
    try:
        return VGGSoundFolds(VGGSoundIndex(root)), ["test"], "map"
    except (FileNotFoundError, ValueError) as error:  # the index's messages name the file
        raise UserError(str(error)) from error


def load_embeddings(args: argparse.Namespace) -> dict[str, nn.Module]:
    """The rows' embeddings by row name, frozen, on the device (module docstring)."""
    rows: dict[str, nn.Module] = {}
    for run in args.run:
        if run in rows:
            raise UserError(f"{run}: given twice as --run")
        rows[run] = load_audio_tower(run)
    if args.random_init:
        if not args.run:
            raise UserError("--random-init builds a tower of the first --run's architecture: give a --run")
        rows["random-init audio tower"] = random_init_tower(rows[args.run[0]])
    if args.wav2clip:
        rows["Wav2CLIP"] = load_wav2clip(args.wav2clip)
    if args.mel:
        rows["mel statistics"] = MelStatisticsEmbedding().eval()
    return {name: embed.to(args.device) for name, embed in rows.items()}


def result_json(result: ProbeResult) -> dict:
    """A probe result as JSON values (no interval: null, JSON having no NaN)."""
    values = asdict(result)
    values["interval"] = None if math.isnan(result.interval[0]) else list(result.interval)
    return values


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m projects.wavbrivl.table1", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument("--root", required=True, help="the dataset's folder")
    parser.add_argument("--run", action="append", default=[], help="an audio-tower run folder or checkpoint")
    parser.add_argument("--random-init", action="store_true", help="a random-init tower like the first --run")
    parser.add_argument("--wav2clip", help="the official Wav2CLIP.pt")
    parser.add_argument("--mel", action="store_true", help="the mel-statistics baseline")
    parser.add_argument("--probes", nargs="+", default=["linear", "mlp"], choices=["linear", "mlp"])
    parser.add_argument("--epochs", type=int, default=ProbeSettings.epochs, help="probe training epochs")
    parser.add_argument("--lr", type=float, default=ProbeSettings.lr, help="probe learning rate")
    parser.add_argument("--probe-batch-size", type=int, help="probe mini-batches (default: full batch)")
    parser.add_argument("--resamples", type=int, default=Bootstrap.resamples, help="bootstrap resamples")
    parser.add_argument("--batch-size", type=int, default=32, help="clips embedded at once")
    parser.add_argument("--workers", type=int, default=0, help="audio decoding processes")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    parser.add_argument("--out", help="a JSON file for every value")
    args = parser.parse_args(argv)
    if not (args.run or args.wav2clip or args.mel):
        raise UserError("no embedding given: give --run, --wav2clip or --mel (--random-init needs a --run)")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {args.device}: no CUDA device on this machine")
    return args


def describe(
    args: argparse.Namespace, folded: FoldedCSV | VGGSoundFolds, test_folds: list[str] | None
) -> str:
    """The lines above the table: the dataset, its protocol and the clips its CSV lists but the disk lacks."""
    if test_folds is None:
        protocol = (
            f"{len(folded.folds)}-fold cross-validation, accuracy (95 % bootstrap intervals over clips)"
        )
    else:
        protocol = "probes trained on the clips outside the test split, mAP on the test split"
    if len(folded.report):
        protocol += f"; {folded.report.summary(len(folded.clips) + len(folded.report))}"
    data = f"{args.dataset} ({args.root}), {len(folded.clips)} clips, {len(folded.labels)} classes"
    return f"{PAPER}: {data}\n{protocol}"


def main(argv: list[str]) -> dict:
    """Run the command; returns what `--out` writes."""
    args = parse_args(argv)
    folded, test_folds, metric = load_dataset(args.dataset, Path(args.root))
    embeddings = load_embeddings(args)
    settings = [
        ProbeSettings(kind=kind, epochs=args.epochs, lr=args.lr, batch_size=args.probe_batch_size)
        for kind in args.probes
    ]
    bootstrap = Bootstrap(resamples=args.resamples)
    data = FoldedAudioDataModule(folded, batch_size=args.batch_size, num_workers=args.workers)
    rows = {}
    for i, (name, embed) in enumerate(embeddings.items(), 1):
        print(f"[{i}/{len(embeddings)}] {name}: {len(folded.clips)} clips", file=sys.stderr, flush=True)
        rows[name] = probe_embedding(
            embed,
            data.predict_dataloader(),
            len(folded.labels),
            settings,
            test_folds=test_folds,
            metric=metric,
            device=args.device,
            bootstrap=bootstrap,
        )
    print(describe(args, folded, test_folds))
    print(format_rows({name: EvaluationResult(probes) for name, probes in rows.items()}, retrieval=False))

    table = {
        "paper": PAPER,
        "dataset": args.dataset,
        "root": str(args.root),
        "folds": folded.folds,
        "test_folds": test_folds or folded.folds,
        "classes": folded.labels,
        "clips": len(folded.clips),
        "skipped_clips": len(folded.report),
        "probes": [asdict(s) for s in settings],
        "bootstrap": asdict(bootstrap),
        "rows": {name: {kind: result_json(r) for kind, r in probes.items()} for name, probes in rows.items()},
    }
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(table, indent=2) + "\n")
        print(out)
    return table


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except UserError as error:  # a user's mistake: one line and exit status 2, as `avgen` ends
        print(f"table1: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
