"""Multi-process behaviour on CPU: gloo process groups (torch.multiprocessing) and the real CLI under DDP."""

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from shared.data import VGGSoundIndex
from shared.data.loaders import ResumableDistributedSampler, ShardedEvalSampler, train_loader
from shared.vq import EMAVectorQuantizer, VectorQuantizer
from tests.conftest import REPO
from tests.shared.probes import avgen_env, child, probe, recorded_runs, run, wait_for

CONFIGS = REPO / "projects" / "specvqgan" / "configs"
CONFIG = CONFIGS / "toy_vggishish.yaml"


@pytest.mark.parametrize("n", [0, 1, 5, 12, 13])
@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_sharded_eval_sampler_keeps_every_clip_exactly_once(n, world):
    shards = [list(ShardedEvalSampler(range(n), num_replicas=world, rank=r)) for r in range(world)]
    assert [i for shard in shards for i in shard] == list(range(n))  # each once, in order
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert [len(ShardedEvalSampler(range(n), world, r)) for r in range(world)] == list(map(len, shards))


def test_train_loader_resumes_mid_epoch_and_after_an_epoch_s_last_batch():
    """The order of batches after a restore equals the uninterrupted order, whichever epoch was saved."""

    def epochs(loader, first: int, n: int) -> list[list[int]]:
        out = []
        for epoch in range(first, first + n):
            loader.sampler.set_epoch(epoch)  # what Lightning does before each epoch
            out.append([int(i) for batch in loader for i in batch])
        return out

    data = list(range(10))
    straight = epochs(train_loader(data, batch_size=3, seed=1), 0, 3)  # 3 batches an epoch, one clip dropped
    assert len({tuple(sorted(e)) for e in straight}) > 1 and all(len(e) == 9 for e in straight)
    for batches_seen in (1, 3):  # mid-epoch, and after the epoch's last batch
        loader = train_loader(data, batch_size=3, seed=1)
        loader.sampler.set_epoch(1)
        iterator = iter(loader)
        seen = [int(i) for _ in range(batches_seen) for i in next(iterator)]
        state = loader.state_dict()
        fresh = train_loader(data, batch_size=3, seed=1)
        fresh.load_state_dict(state)
        rest = [int(i) for batch in fresh for i in batch]  # Lightning iterates before calling set_epoch
        if batches_seen < 3:
            assert seen + rest == straight[1]
        else:
            assert seen == straight[1] and rest == straight[2]
        assert isinstance(fresh.sampler, ResumableDistributedSampler)


def clustered_batches(steps: int, n: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(6, 8, generator=g) * 3
    return [
        (centres[torch.randint(6, (n,), generator=g)] + 0.1 * torch.randn(n, 8, generator=g)).t().unsqueeze(0)
        for _ in range(steps)
    ]  # each [1, C=8, n positions]


def run_quantizers(batches: list[torch.Tensor], rank: int, world: int) -> dict[str, torch.Tensor]:
    """Both quantiser flavours over the batches, each process holding a contiguous slice of every batch."""
    torch.manual_seed(0)
    ema = EMAVectorQuantizer(16, 8, decay=0.9).train()
    grad = VectorQuantizer(16, 8, restart_unused_after=2).train()
    for batch in batches:
        part = batch.shape[-1] // world
        local = batch[..., rank * part : (rank + 1) * part]
        ema(local)
        grad(local)
    return {
        "ema": ema.codebook.clone(),
        "ema_count": ema.ema_count.clone(),
        "grad": grad.codebook.detach().clone(),
    }


def _ddp_quantizers(rank: int, world: int, rdzv: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{rdzv}", rank=rank, world_size=world)
    result = run_quantizers(clustered_batches(30, 48), rank, world)
    torch.save(result, f"{out}.{rank}")
    dist.destroy_process_group()


@pytest.mark.slow
def test_codebooks_are_the_same_whatever_the_number_of_processes(tmp_path):
    single = run_quantizers(clustered_batches(30, 48), rank=0, world=1)
    processes = mp.spawn(
        _ddp_quantizers, args=(2, str(tmp_path / "rdzv"), str(tmp_path / "q")), nprocs=2, join=False
    )
    try:
        while not processes.join():  # raises if a process failed
            pass
    finally:  # a timed-out test leaves no process behind
        for process in processes.processes:
            process.kill()
    ranks = [torch.load(tmp_path / f"q.{r}") for r in range(2)]
    for key in single:
        assert torch.allclose(ranks[0][key], ranks[1][key], atol=0)  # identical on every rank
        assert torch.allclose(ranks[0][key], single[key], atol=1e-5), key  # and equal to one process


def cli(args: list[str], log: Path, env: dict[str, str] | None = None) -> str:
    """`avgen <args>` to its end, which must be a success; its output."""
    status, output = run(args, log, env)
    assert status == 0, output[-4000:]
    return output


def toy(toy_root: Path, root: Path, config: Path = CONFIG, cache: Path | None = None) -> list[str]:
    return [
        "--config", str(config),
        f"--data.init_args.dataset.init_args.root={toy_root / 'vggsound'}",
        f"--data.init_args.cache_dir={cache or root / 'cache'}",
        f"--run.root={root / 'runs'}",
        "--trainer.enable_progress_bar=false",
        "--trainer.accelerator=cpu",
    ]  # fmt: skip


def scalars(run_dir: Path, tag: str) -> list[float]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return [s.value for s in events.Scalars(tag)]


def weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, weights_only=False, map_location="cpu")["state_dict"]


def step_of(ckpt: Path) -> int:
    return torch.load(ckpt, weights_only=False, map_location="cpu")["global_step"]


RUN = Path("specvqgan") / "toy_vggishish" / "default"
DDP = ["--trainer.devices=2", "--trainer.strategy=ddp"]


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_with_the_same_global_batch(toy_root, tmp_path):
    # shuffled: the samplers agree on global batches
    common = ["--trainer.max_epochs=3", "--trainer.callbacks=[]"]
    one, two = tmp_path / "one", tmp_path / "two"
    cli(["fit", *toy(toy_root, one), *common, "--data.init_args.batch_size=12"], tmp_path / "one.log")
    cli(["fit", *toy(toy_root, two), *common, "--data.init_args.batch_size=6", *DDP], tmp_path / "two.log")
    loss_one, loss_two = scalars(one / "runs" / RUN, "val/loss"), scalars(two / "runs" / RUN, "val/loss")
    assert len(loss_one) == len(loss_two) == 3
    assert loss_one == pytest.approx(loss_two, rel=1e-4)
    assert loss_one[-1] < loss_one[0]  # it trained
    w1, w2 = (
        weights(one / "runs" / RUN / "checkpoints" / "last.ckpt"),
        weights(two / "runs" / RUN / "checkpoints" / "last.ckpt"),
    )
    # Adam's step divides by sqrt(v): where a gradient is near zero, rounding differences between the one- and
    # two-process reductions become weight differences that a few conv weights carry past 1e-5 in these 9
    # steps, but not to the 1e-4 tolerance. A wrong reduction moves weights by whole steps (the lr, 3e-4).
    assert all(torch.allclose(w1[k], w2[k], atol=1e-4) for k in w1)


@pytest.mark.slow
def test_sharded_test_equals_one_process(toy_root, tmp_path):
    train = tmp_path / "train"
    cli(["fit", *toy(toy_root, train), "--trainer.max_steps=4"], tmp_path / "train.log")
    ckpt = train / "runs" / RUN / "checkpoints" / "last.ckpt"
    results = {}
    for name, extra in [("one", []), ("two", DDP)]:
        root = tmp_path / name
        # batch 5 over 12 test clips: uneven shards and a partial batch on each process
        cli(
            ["test", *toy(toy_root, root), "--data.init_args.batch_size=5", f"--ckpt_path={ckpt}", *extra],
            tmp_path / f"{name}.log",
        )
        results[name] = {tag: scalars(root / "runs" / RUN, tag) for tag in ("test/loss", "test/acc")}
    assert results["one"]["test/loss"] == pytest.approx(results["two"]["test/loss"], rel=1e-6)
    assert results["one"]["test/acc"] == results["two"]["test/acc"]


def hidden_files(folder: Path) -> list[Path]:
    """Temporary files of `shared.files.atomic_path` (and anything else hidden)."""
    return [p for p in folder.rglob(".*") if p.is_file()]


@pytest.mark.slow
def test_sharded_predict_writes_each_clip_s_outputs_once_as_one_process_does(toy_root, tmp_path):
    """`predict` of the codebook (two outputs a clip: mel and codes; untrained, seeded) with one process and
    with two, through `ClipPredictionWriter`; then a re-run that must only fill in what is missing."""
    settings = [
        "--model.init_args.classifier_ckpt=null",  # no perceptual loss: predict needs no VGGish-ish
        "--model.init_args.perceptual_weight=0",
        "--data.init_args.batch_size=5",  # 12 test clips: uneven shards and a partial batch on each process
    ]
    codebook = CONFIGS / "toy_codebook.yaml"
    folder = {name: tmp_path / name / "runs" / "specvqgan" / "toy_codebook" / "default" / "predictions"
              for name in ("one", "two")}  # fmt: skip
    outputs = {}
    for name, extra in [("one", []), ("two", DDP)]:
        cli(
            ["predict", *toy(toy_root, tmp_path / name, codebook, tmp_path / "cache"), *settings, *extra],
            tmp_path / f"{name}.log",
        )
        outputs[name] = {p.relative_to(folder[name]): np.load(p) for p in folder[name].rglob("*.npy")}
        assert not hidden_files(folder[name]), "a temporary file was left behind"
    clips = [r.clip_id for r in VGGSoundIndex(toy_root / "vggsound").records("test")]
    assert len(clips) == 12
    assert (
        set(outputs["one"])
        == set(outputs["two"])
        == {Path(k) / f"{c}.npy" for k in ("mel", "codes") for c in clips}
    )
    for path, one in outputs["one"].items():
        two = outputs["two"][path]
        assert one.shape == two.shape and one.dtype == two.dtype, path
        if path.parts[0] == "codes":
            assert one.shape == (80 // 16, 160 // 16) and np.array_equal(one, two), path  # crop_frames 160
        else:  # mels in [0, 1]: other batch compositions round differently (up to 1.2e-5 seen), while two
            assert one.shape == (80, 160) and np.abs(one - two).max() < 1e-4, path  # clips differ by 0.49+

    # a re-run writes only the missing files: one removed, one replaced by a marker array
    removed, replaced = folder["one"] / "mel" / f"{clips[0]}.npy", folder["one"] / "codes" / f"{clips[1]}.npy"
    removed.unlink()
    np.save(replaced, np.full(3, -1))
    before = {p: p.stat().st_mtime_ns for p in folder["one"].rglob("*.npy") if p != removed}
    cli(
        ["predict", *toy(toy_root, tmp_path / "one", codebook, tmp_path / "cache"), *settings],
        tmp_path / "rerun.log",
    )
    assert np.array_equal(np.load(removed), outputs["one"][removed.relative_to(folder["one"])])
    assert np.array_equal(np.load(replaced), np.full(3, -1))
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in before.items()), "an existing file was rewritten"


def fake_slurm(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    scontrol.chmod(0o755)
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "avgen-test", "SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_NNODES": "1", "SLURM_NODELIST": "localhost", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
    }  # fmt: skip


@pytest.mark.slow
def test_preemption_checkpoints_requeues_and_resumes_exactly(toy_root, tmp_path):
    steps, signalled_at = 24, 10
    # 36 train clips, batch 16: 2 batches an epoch, so step 10 is the last batch of the 5th epoch, where the
    # save waits for the end of the next step (see shared.callbacks.slurm)
    random_crops = "--data.init_args.random_crop=true"  # random numbers drawn at every step
    steps_file, paused = tmp_path / "steps.txt", tmp_path / "paused"
    args = [
        "fit",
        *toy(toy_root, tmp_path / "pre"),
        f"--trainer.max_steps={steps}",
        "--checkpoint.every_n_steps=1000",
        random_crops,
        probe("StepRecorder", path=str(steps_file)),
        probe(
            "PauseAtStep", step=signalled_at, marker=str(paused)
        ),  # until the signal: it lands mid-training
    ]
    env = avgen_env(**fake_slurm(tmp_path))
    run_dir, log = tmp_path / "pre" / "runs" / RUN, tmp_path / "preempted.log"
    with child(args, log, env) as proc:
        wait_for(paused, proc, log)
        proc.send_signal(signal.SIGUSR1)
        proc.wait(timeout=600)
    assert proc.returncode == 0, log.read_text()[-4000:]
    stopped_at = step_of(run_dir / "hpc_ckpt_1.ckpt")
    assert stopped_at == signalled_at + 1
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    # the requeued job: the same command in the same environment
    resumed = cli(args, tmp_path / "requeued.log", env)
    assert f"resuming {run_dir}" in resumed
    first_run, second_run = recorded_runs(steps_file)
    assert first_run == list(range(1, stopped_at + 1))
    assert second_run == list(range(stopped_at + 1, steps + 1)), "the requeued job did not resume"
    assert step_of(run_dir / "checkpoints" / "last.ckpt") == steps
    straight = tmp_path / "straight"
    cli(
        ["fit", *toy(toy_root, straight), f"--trainer.max_steps={steps}", random_crops],
        tmp_path / "straight.log",
    )
    w_resumed = weights(run_dir / "checkpoints" / "last.ckpt")
    w_straight = weights(straight / "runs" / RUN / "checkpoints" / "last.ckpt")
    assert all(torch.equal(w_resumed[k], w_straight[k]) for k in w_straight), "resumed weights differ"


@pytest.mark.slow
def test_a_preemption_signal_at_or_after_the_last_step_lets_the_job_finish(toy_root, tmp_path):
    """SLURM's warning can come when training is over: nothing to save or requeue, and the process must not
    die of it (SIGUSR1's default action) before it exits by itself."""
    steps = 2
    last_step, exiting = tmp_path / "last_step", tmp_path / "exiting"
    args = [
        "fit",
        *toy(toy_root, tmp_path),
        f"--trainer.max_steps={steps}",
        probe("PauseAtStep", step=steps, marker=str(last_step)),
        probe("PauseAtExit", marker=str(exiting)),  # after `fit` has returned and the callbacks are torn down
    ]
    log = tmp_path / "finished.log"
    with child(args, log, avgen_env(**fake_slurm(tmp_path))) as proc:
        for marker in (last_step, exiting):
            wait_for(marker, proc, log)
            proc.send_signal(signal.SIGUSR1)
        proc.wait(timeout=600)
    output = log.read_text()
    assert proc.returncode == 0, output[-4000:]
    assert "pre-emption: signal during or after the last step: training finished, not requeued" in output
    assert "pre-emption: SIGUSR1 after training ended: nothing to save, job not requeued" in output
    run_dir = tmp_path / "runs" / RUN
    assert not list(run_dir.glob("hpc_ckpt_*")) and not (tmp_path / "scontrol.log").exists()
    assert step_of(run_dir / "checkpoints" / "last.ckpt") == steps


def final_files(cache: Path) -> set[Path]:
    return {p for p in cache.rglob("*.npy") if not p.name.startswith(".")}


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_kill_9_during_preparation_loses_nothing_and_resumes(toy_root, tmp_path, workers):
    cache = tmp_path / "cache"
    # 30 s of looped audio per clip makes each clip slow enough to kill mid-way
    args = ["prepare", "--dataset", "vggsound", "--root", str(toy_root / "vggsound"), "--features", "mel",
            "--cache-dir", str(cache), "--workers", str(workers), "--duration", "30"]  # fmt: skip
    total = len(list((toy_root / "vggsound" / "video").glob("*.mp4")))
    log = tmp_path / "killed.log"
    with child(args, log) as proc:
        deadline = time.monotonic() + 600
        while len(final_files(cache)) < 5 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # progress: files under their final names
        os.killpg(proc.pid, signal.SIGKILL)  # the process and its pool workers, mid-way
    done = {p: p.stat().st_mtime_ns for p in final_files(cache)}
    assert 5 <= len(done) < total, log.read_text()[-4000:]
    for path in done:  # every file under its final name is complete
        assert np.load(path).shape == (80, 1 + 30 * 22050 // 256)
    # what a kill in the middle of a write leaves (a kill above may have left one too)
    folder = next(iter(done)).parent
    missing = sorted(
        {p.stem for p in (toy_root / "vggsound" / "video").glob("*.mp4")} - {p.stem for p in done}
    )
    (folder / f".{missing[0]}.k9stale.tmp.npy").write_bytes(b"\x93NUMPY half")
    rerun = cli(args, tmp_path / "rerun.log")
    assert "skipped 0 of" in rerun
    after = {p: p.stat().st_mtime_ns for p in final_files(cache)}
    assert len(after) == total
    assert all(after[p] == mtime for p, mtime in done.items())  # finished clips were not recomputed
    assert not hidden_files(folder), "temporary files were left behind"
    params = json.loads(next(cache.rglob("params.json")).read_text())
    assert params["duration"] == 30.0 and params["index"] == "VGGSoundIndex"
