"""Studies as data: a YAML file of runs, sweeps, measurements and reports (:mod:`.spec`), run by ``hf-cut study``
(:mod:`.runner`)."""

from .runner import main, run_reports, run_study
from .spec import Run, SweepSpec, load_study, planned_runs, slug, sweep_specs

__all__ = ["Run", "SweepSpec", "load_study", "main", "planned_runs", "run_reports", "run_study", "slug", "sweep_specs"]
