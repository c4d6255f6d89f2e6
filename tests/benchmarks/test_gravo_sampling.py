"""benchmarks/gravo_sampling.py at the tiny size: both samplers draw identical tokens in every case (stretches
from the start and from a primed middle, whole windows, Low with guidance and Up) and the script prints the
scheme-over-ours ratios and the per-clip summary; no timing is asserted."""

import math

import pytest
import torch

from benchmarks.gravo_sampling import main


@pytest.fixture(autouse=True)
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    "mode",
    [["--steps", "2", "--warmup", "1", "--mid-batches", "2", "--up-positions", "start", "mid"], ["--whole"]],
)
def test_tiny_benchmark_prints_identical_tokens_and_ratios(tmp_path, capsys, mode):
    out = tmp_path / "out.json"
    argv = ["--sizes", "tiny", "--batches", "2", "--repeats", "1", "--threads", "1", "--out", str(out), *mode]
    whole = "--whole" in mode
    report = main(argv)
    printed = capsys.readouterr().out

    rows = report["rows"]
    assert {(r["kind"], r["from"]) for r in rows} == (
        {("low", 0), ("up", 0)} if whole else {("low", 0), ("low", 32), ("up", 0), ("up", 32)}
    )
    assert all(r["tokens_identical"] for r in rows)
    assert all(r["timed"] == ("whole window" if whole else "2 steps") for r in rows)
    for row in rows:
        assert math.isclose(row["wall_ratio"], row["scheme_wall"] / row["ours_wall"], rel_tol=1e-9)
        assert row["scheme_wall"] > 0 and row["ours_wall"] > 0
        line = next(line for line in printed.splitlines() if line.startswith(f"tiny  {row['kind']:<6}"))
        assert line.endswith("identical")
    assert "DIFFERENT" not in printed
    assert "seconds per 4.096-s clip" in printed
    (per_clip,) = report["per_clip"]
    assert per_clip["wall_ratio"] > 0 and per_clip["cpu_ratio"] > 0
    assert out.is_file()
