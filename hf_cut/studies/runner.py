"""Running a study file (:mod:`hf_cut.studies.spec`): train what is missing, sweep it, merge, measure, report.

Stages run in order, and inside a stage seed by seed (every run's seed 0 before any seed 1), so a study stopped early
holds the same seeds for every setting. A run is trained when its folder has no ``layer_losses.json`` (no
``ood_sweep.json`` where the recipe sweeps itself) and swept by each ``sweeps`` entry whose output is missing; the
study file is read again after every run, so runs can be added while it goes; a run that fails is reported and the
others go on. Several workers can share a study: each claims a run (a ``.claim`` folder in the run's folder, removed
when the run is done, the machine and process inside) before working on it; the claims of an interrupted study stay
(remove them to start it again), and one whose process is gone is reported as a failure. After each run its sweep
records, relabelled with the run's label and its model folder as ``path`` (one training seed), replace that folder's
records in the results file (under a lock, written atomically), and its summary (runtime, dual variables, held-out
layer losses) goes into ``results/runs.json``. Then, by the worker that finishes last, the ``measure`` commands whose
output is missing, and every ``reports`` command: with every model and measurement cached, a study run again
rewrites its tables and figures unchanged. Whatever fails (a run, a recipe that exits 0 without its output, a sweep,
a measurement, a report) is reported by name, the rest goes on, and the study ends with a summary and exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shlex
import socket
import subprocess
import sys
import time

from ..files import atomic_write, locked, write_json
from ..validation import parse_checked
from .spec import Run, SweepSpec, load_study, planned_runs, sweep_specs

__all__ = ["main", "run_reports", "run_study"]

SUMMARY_KEYS = (
    "train_runtime", "global_step", "num_layers", "dual_variables", "layer_losses", "rmse", "eval_loss",
    "eval_mean_token_accuracy", "constraint_satisfaction", "descent_ratio_mean", "example_satisfaction",
)  # fmt: skip
RECIPE_SWEEP = SweepSpec(args="", into="sweep.json", runs=None, labels={})  # the recipe's own ood_sweep.json


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _sweep_dir(run: Run, spec: SweepSpec) -> str:
    return run.output_dir if spec is RECIPE_SWEEP else os.path.join(run.output_dir, spec.folder)


def _swept(run: Run, spec: SweepSpec) -> bool:
    return os.path.isfile(os.path.join(_sweep_dir(run, spec), "ood_sweep.json"))


def _specs(study: dict, run: Run) -> list[SweepSpec]:
    """The sweeps that cover ``run``: the study's ``sweeps`` entries, else the recipe's own."""
    specs = sweep_specs(study)
    return [s for s in specs if s.covers(run)] if specs else [RECIPE_SWEEP]


def _needs_training(study: dict, run: Run) -> bool:
    if run.model is not None:
        return False
    return not _swept(run, RECIPE_SWEEP) if not sweep_specs(study) else not run.trained


def _pending(study: dict, run: Run) -> bool:
    return _needs_training(study, run) or not all(_swept(run, s) for s in _specs(study, run))


def _collect(run: Run, spec: SweepSpec, results: str) -> None:
    """Replace the run's records in ``results/<spec.into>`` by its sweep's (relabelled, its folder as ``path``)."""
    from ..evaluation.report import load_sweep
    from ..evaluation.sweep import SCALAR_METRICS, aggregate_records

    path = run.model or run.output_dir
    target = os.path.join(results, spec.into)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    label = spec.labels.get(run.label, run.label)
    new = [{**r, "model": label, "path": path} for r in load_sweep(_sweep_dir(run, spec)).records]
    with locked(target):  # another worker of the study may be merging its run into the same file
        kept = [r for r in load_sweep(target).records if r.get("path") != path] if os.path.isfile(target) else []
        records = kept + new
        aggregates = aggregate_records(records, metrics=(*SCALAR_METRICS, "rmse", "accuracy"))
        write_json(target, {"config": {"study": "see the study file"}, "records": records, "aggregates": aggregates})


def _record_summary(run: Run, results: str) -> None:
    """Put the trained run's summary (its ``layer_losses.json``) into ``results/runs.json``."""
    summary_path = os.path.join(run.output_dir, "layer_losses.json")
    if run.model is not None or not os.path.isfile(summary_path):
        return
    runs_path = os.path.join(results, "runs.json")
    with open(summary_path, encoding="utf-8") as f:
        summary = json.load(f)
    entry = {"label": run.label, "seed": run.seed, "path": run.output_dir,
             **{k: summary[k] for k in SUMMARY_KEYS if k in summary}}  # fmt: skip
    os.makedirs(results, exist_ok=True)
    with locked(runs_path):
        runs = {}
        if os.path.isfile(runs_path):
            with open(runs_path, encoding="utf-8") as f:
                runs = json.load(f)
        runs[run.key] = entry
        write_json(runs_path, dict(sorted(runs.items())), indent=1)


def _claim(run: Run) -> bool:
    """Take ``run`` for this worker: its folder made, then ``.claim`` inside it created atomically; another worker of
    the same study that finds the claim goes on to the next run (start several to use several cores)."""
    os.makedirs(run.output_dir, exist_ok=True)
    claim = os.path.join(run.output_dir, ".claim")
    try:
        os.mkdir(claim)
    except FileExistsError:
        return False
    with open(os.path.join(claim, "owner"), "w", encoding="utf-8") as f:
        f.write(f"{socket.gethostname()} {os.getpid()}\n")
    return True


def _release(run: Run) -> None:
    claim = os.path.join(run.output_dir, ".claim")
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(claim, "owner"))
    os.rmdir(claim)


def _stale(run: Run) -> bool:
    """Whether ``run``'s claim belongs to a process of this machine that is gone (killed, crashed)."""
    try:
        with open(os.path.join(run.output_dir, ".claim", "owner"), encoding="utf-8") as f:
            host, pid = f.read().split()
    except (OSError, ValueError):
        return False  # no owner written (yet, or by an earlier release): another worker's
    if host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: is it there? (PermissionError: there, another user's)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    return False


def _call(command: list[str], log_path: str, key: str, stdout: str | None = None) -> bool:
    _log(f"{key}: {shlex.join(command)}")
    with open(log_path, "a", encoding="utf-8") as log, open(stdout or os.devnull, "w", encoding="utf-8") as out:
        code = subprocess.call(command, stdout=out if stdout else log, stderr=log)
    if code != 0:
        _log(f"{key} FAILED ({code}): {log_path}")
    return code == 0


def _work(study: dict, run: Run, results: str) -> str | None:
    """Train ``run`` if it needs it, sweep it where a sweep is missing, collect it; what failed, or None."""
    log = os.path.join(run.output_dir, "train.log")
    if _needs_training(study, run):
        if not _call([sys.executable, study["recipe"], *run.flags], log, run.key):
            return f"the recipe failed (log: {log})"
        if _needs_training(study, run):  # it exited 0 but wrote no summary (or, sweeping itself, no sweep)
            wrote = "ood_sweep.json" if not sweep_specs(study) else "layer_losses.json"
            return f"the recipe exited 0 without writing {wrote} in {run.output_dir} (log: {log})"
    for spec in _specs(study, run):
        if spec is not RECIPE_SWEEP and not _swept(run, spec):
            command = [sys.executable, "-m", "hf_cut", "sweep", "--model", run.model or run.output_dir, "--labels",
                       spec.labels.get(run.label, run.label), *shlex.split(spec.args), "--output_dir",
                       _sweep_dir(run, spec)]  # fmt: skip
            sweep_log = os.path.join(run.output_dir, "sweep.log")
            if not _call(command, sweep_log, run.key):
                return f"the sweep into {spec.into} failed (log: {sweep_log})"
            if not _swept(run, spec):
                return f"the sweep into {spec.into} exited 0 without writing {_sweep_dir(run, spec)}/ood_sweep.json"
        try:
            _collect(run, spec, results)
        except (OSError, ValueError, KeyError) as err:
            return f"its sweep could not be merged into {spec.into}: {err}"
    _record_summary(run, results)
    return None


def _fill(command: str, study: dict, results: str) -> list[str]:
    argv = shlex.split(command.replace("{results}", results).replace("{output_dir}", study["output_dir"]))
    if "{runs}" in argv:
        i = argv.index("{runs}")
        argv[i : i + 1] = [r.output_dir for r in planned_runs(study) if r.model is None and r.trained]
    return argv


def _command(study: dict, entry: dict, results: str) -> list[str]:
    """The process a ``measure`` or ``reports`` entry runs: the study's own script on ``results``, or ``hf-cut``."""
    if entry.get("script"):
        return [sys.executable, os.path.join(study["_folder"], entry["script"]), "--results", results]
    return [sys.executable, "-m", "hf_cut", *_fill(entry["command"], study, results)]


def _report(hf_cut, argv: list[str]) -> tuple[int, str]:
    """``hf-cut ARGV`` in this process: its exit status and what it printed (a refusal's line included)."""
    output, errors = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(errors):
        try:
            code = hf_cut(argv)
        except SystemExit as stop:  # a refused argument (exit status 2, one line on stderr)
            code = stop.code if isinstance(stop.code, int) else 1
        except Exception as err:  # noqa: BLE001  (one report's bug must not cost the others)
            print(f"{type(err).__name__}: {err}", file=errors)
            code = 1
    return code or 0, output.getvalue() if not code else errors.getvalue().strip()


def run_reports(study: dict, results: str) -> list[str]:
    """Every ``reports`` command in order, in this process, inside the results folder (paths in their command lines
    are relative to it, so what they write does not depend on where the folder is); a ``stdout`` file is written by
    its first command and appended to by the next ones naming it, atomically once all have run. A report that fails
    is logged and the others still run; returns the failed ones."""
    from ..cli import main as hf_cut

    failed: list[str] = []
    texts: dict[str, str] = {}  # stdout file -> its text, in the order the reports wrote it
    broken: set[str] = set()  # stdout files one of whose reports failed: left as they were
    here, absolute = os.getcwd(), os.path.abspath(results)
    os.makedirs(results, exist_ok=True)
    os.chdir(results)
    try:
        for entry in study.get("reports") or []:
            name = f"report {entry.get('script') or entry['command']!r}"
            if entry.get("script"):  # run from where the study was started: its script path is relative to there
                if subprocess.call(_command(study, entry, absolute), cwd=here) != 0:
                    _log(f"{name} FAILED")
                    failed.append(name)
                continue
            code, text = _report(hf_cut, _fill(entry["command"], study, "."))
            if code:
                _log(f"{name} FAILED ({code}): {text}")
                failed.append(name)
                broken.update([entry["stdout"]] if entry.get("stdout") else [])
            elif entry.get("stdout"):
                path = entry["stdout"]
                heading = f"{entry['heading']}\n\n" if entry.get("heading") else ""
                texts[path] = texts[path] + "\n" + heading + text if path in texts else heading + text
        for path, text in texts.items():
            if path in broken:
                _log(f"{path} left as it was: one of the reports that write it failed")
                continue
            with atomic_write(path) as f:
                f.write(text)
    finally:
        os.chdir(here)
    return failed


def run_study(path: str, dry_run: bool = False, collect_only: bool = False, reports_only: bool = False,
              results: str | None = None) -> list[str]:  # fmt: skip
    """Train and sweep the study's missing runs one after another, collecting each, then take the missing
    measurements and write the reports; returns the keys of the runs (or measurements) that failed. ``results``
    overrides the study's results folder."""
    failed: dict[str, str] = {}  # what failed -> why
    trains = not (dry_run or collect_only or reports_only)
    while trains:
        study = load_study(path)
        results_dir = results or study["results"]
        pending = [r for r in planned_runs(study) if r.key not in failed and _pending(study, r)]
        run = next((r for r in pending if _claim(r)), None)
        if run is None:  # done, or every pending run is another worker's
            break
        try:
            error = _work(study, run, results_dir)
        except Exception as err:  # noqa: BLE001  (a results file that cannot be read: this run fails, others go on)
            error = f"{type(err).__name__}: {err}"
        finally:
            _release(run)
        if error:
            _log(f"{run.key} FAILED: {error}")
            failed[run.key] = error
    study = load_study(path)
    results_dir = results or study["results"]
    claimed = [r for r in planned_runs(study) if trains and os.path.isdir(os.path.join(r.output_dir, ".claim"))]
    for run in (r for r in claimed if _stale(r)):
        failed[run.key] = (f"claimed by a process that is gone; remove {os.path.join(run.output_dir, '.claim')} to "
                           "run it again")  # fmt: skip
    busy = [r.key for r in claimed if r.key not in failed]
    if busy:  # the measurements and reports wait for the last worker, which sees every run
        _log(f"{len(busy)} run(s) still in another worker's hands ({', '.join(busy)}): the worker that finishes last "
             "takes the measurements and writes the reports")  # fmt: skip
        return _summary(failed)
    if dry_run:
        for run in planned_runs(study):
            if _pending(study, run):
                print(f"{run.key}: " + (f"{study['recipe']} {' '.join(run.flags)}" if _needs_training(study, run)
                                        else "sweep only"))  # fmt: skip
        return []
    if collect_only:
        for run in planned_runs(study):
            swept = [spec for spec in _specs(study, run) if _swept(run, spec)]
            for spec in swept:
                _collect(run, spec, results_dir)
            if swept:
                _record_summary(run, results_dir)
    if trains:
        for entry in study.get("measure") or []:
            done = os.path.join(results_dir, entry.get("done") or entry["stdout"])
            if not os.path.exists(done):
                error = _measure(study, entry, results_dir, done)
                if error:
                    _log(f"{done} FAILED: {error}")
                    failed[done] = error
    for name in run_reports(study, results_dir):
        failed[name] = "see its line above"
    return _summary(failed)


def _summary(failed: dict[str, str]) -> list[str]:
    if failed:
        _log(f"{len(failed)} failed; the rest is done:\n" + "\n".join(f"  {k}: {v}" for k, v in failed.items()))
    return list(failed)


def _measure(study: dict, entry: dict, results: str, done: str) -> str | None:
    """Take one ``measure`` entry; what failed, or None. Its ``stdout`` file appears only when it succeeded (kept in
    a temporary file until then), so a measurement that failed is taken again next time."""
    command = _command(study, entry, results)
    os.makedirs(study["output_dir"], exist_ok=True)
    log = os.path.join(study["output_dir"], "measure.log")
    stdout = os.path.join(results, entry["stdout"]) if entry.get("stdout") else None
    partial = f"{stdout}.{os.getpid()}.partial" if stdout else None
    if partial:
        os.makedirs(os.path.dirname(os.path.abspath(partial)), exist_ok=True)
    if not _call(command, log, done, partial):
        if partial:
            with contextlib.suppress(FileNotFoundError):
                os.remove(partial)
        return f"exited non-zero (log: {log})"
    if partial:
        os.replace(partial, stdout)
    if not os.path.exists(done):
        return f"exited 0 without writing {done} (log: {log})"
    return None


def _check_args(args: argparse.Namespace) -> None:
    """The study file exists and is valid (every field checked, :func:`load_study`) before anything runs."""
    if not os.path.isfile(args.study):
        raise ValueError(f"argument study: no such file {args.study!r}; give a study file (studies/*/study.yaml).")
    load_study(args.study)
    if args.results is not None and os.path.isfile(args.results):
        raise ValueError(f"argument --results: {args.results!r} is a file; give a folder.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a study file: train, sweep, merge, measure and report.")
    parser.add_argument("study", help="the study file (YAML)")
    parser.add_argument("--dry_run", action="store_true", help="list the runs still to train or sweep, run nothing")
    parser.add_argument("--collect_only", action="store_true",
                        help="merge the swept runs' results and write the reports, train and measure nothing")
    parser.add_argument("--reports_only", action="store_true",
                        help="write the reports from the results files alone (every table and figure again)")
    parser.add_argument("--results", default=None, help="a results folder other than the study's")
    args = parse_checked(parser, argv, _check_args)
    failed = run_study(args.study, dry_run=args.dry_run, collect_only=args.collect_only,
                       reports_only=args.reports_only, results=args.results)  # fmt: skip
    if failed:
        print(f"{len(failed)} run(s) or measurement(s) failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
