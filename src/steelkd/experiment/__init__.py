"""The paper's experiments end to end: train teachers and students, distil, evaluate, benchmark, report.

A one-way chain of modules, each importing only those before it:

- :mod:`~steelkd.experiment.config`: the experiment YAML's schema, loading and validation, and
  :func:`run_config` (one role and seed -> the run config that is trained);
- :mod:`~steelkd.experiment.plan`: the runs, their content hashes and directories (reuse / resume);
- :mod:`~steelkd.experiment.results`: what running produced, as plain objects; ``results.json``;
- :mod:`~steelkd.experiment.run`: training, evaluation, benchmark and the example predictions;
- :mod:`~steelkd.experiment.deviations`: the differences from the paper's recipe (:mod:`steelkd.paper`);
- :mod:`~steelkd.experiment.report` (with ``report_sections``, ``report_experiments``): ``report.md``,
  tables and figures from the results, no model run;
- :mod:`~steelkd.experiment.pipeline`: :func:`run_experiment`, all of it in one call.

Example:
    >>> from steelkd.experiment import load_experiment_config, run_experiment
    >>> cfg = load_experiment_config("configs/experiments/demo.yaml")  # doctest: +SKIP
    >>> result = run_experiment(cfg, "demo_out")  # doctest: +SKIP
    >>> result.report  # doctest: +SKIP
    PosixPath('demo_out/report.md')
"""

from steelkd.experiment.config import (
    BenchSpec,
    EvalSpec,
    ExperimentConfig,
    ExperimentSpec,
    RoleSpec,
    experiment_config_from_dict,
    load_experiment_config,
    run_config,
)
from steelkd.experiment.deviations import paper_deviations
from steelkd.experiment.pipeline import ExperimentResult, run_experiment
from steelkd.experiment.plan import HASH_EXCLUDE, RunSpec, config_hash, plan_experiment
from steelkd.experiment.results import RunRecord
from steelkd.experiment.run import versions

__all__ = [
    "HASH_EXCLUDE",
    "BenchSpec",
    "EvalSpec",
    "ExperimentConfig",
    "ExperimentResult",
    "ExperimentSpec",
    "RoleSpec",
    "RunRecord",
    "RunSpec",
    "config_hash",
    "experiment_config_from_dict",
    "load_experiment_config",
    "paper_deviations",
    "plan_experiment",
    "run_config",
    "run_experiment",
    "versions",
]
