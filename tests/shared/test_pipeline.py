"""`avgen pipeline`: the same intra-op thread count for every stage, and the machine named beside the table."""

import json
import types

import torch

from shared.pipeline import describe_machine, machine_info, main


def test_the_pipeline_pins_its_threads_and_names_the_machine(monkeypatch, capsys):
    fake = types.ModuleType("projects.fake.pipeline")
    fake.STAGES, fake.summarize = [], lambda results: "the summary"
    monkeypatch.setattr("shared.pipeline.project_module", lambda project, command: fake)
    from shared.pipeline import OVERRIDES

    for name in OVERRIDES:  # the caller's own (a CI's OMP_NUM_THREADS) would be recorded too
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")  # recorded as an override (it acts only at start-up)
    before = torch.get_num_threads()
    try:
        main(["--project", "fake", "--threads", "1"])
        assert torch.get_num_threads() == 1
        info = machine_info()
    finally:
        torch.set_num_threads(before)
    out = capsys.readouterr().out.splitlines()
    assert out[-2] == describe_machine(info) and out[-1] == "the summary"
    assert info["threads"] == 1 and info["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert info["environment"] == {"ATEN_CPU_CAPABILITY": "avx2"} and out[-2].endswith(
        "ATEN_CPU_CAPABILITY=avx2"
    )
    assert json.loads(json.dumps(info)) == info  # what run_stage writes to machine.json
