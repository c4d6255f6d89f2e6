"""Evaluation under one protocol: `avgen evaluate` (one run) and `avgen compare` (several runs of a direction).

A project takes part through `projects/<p>/evaluate.py`: `DIRECTION` ("video->audio", "image->audio" or
"audio->image"), `evaluate_run(run, split, device, seed, clips_per_class, samples, judges, **options) ->
RunOutputs` (its generations and its paper's metrics; `judges`: the direction's resolved `Judges`), and
optionally `add_options(parser)` (its own options, e.g. the runs of its pipeline's other stages) and `SYSTEMS`
(the experiments that are systems to compare, with their display names). `shared` never imports `projects`
statically: the module is found with `shared.discovery.project_module(project, "evaluate")`.
"""

from shared.lazy import lazy_package

# imported on first use (`shared.lazy`): `avgen --help` pays for none of it
lazy_package(
    __name__,
    {
        "shared.evaluation.outputs": [
            "DIRECTIONS",
            "RunOutputs",
            "add_melception_options",
            "evaluation_clips",
            "run_datamodule",
        ],
        "shared.evaluation.judges": ["Judges"],
        "shared.evaluation.command": ["evaluate"],
    },
)
