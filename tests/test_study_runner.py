"""The study runner loses nothing: a run, sweep, measurement or report that fails (or exits 0 without its output) is
reported by name while the rest goes on, and `hf-cut study` ends with a summary and exit status 1; results files are
written whole (a writer killed mid-write leaves the previous file) and merged by one worker at a time (two workers
sharing 20 runs keep every record)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hf_cut.files import atomic_write, write_json
from hf_cut.studies.runner import main

ROOT = Path(__file__).resolve().parents[1]

# a stand-in recipe: --knob 13 fails, --knob 7 exits 0 having written nothing, else it writes RECORDS records per γ
RECIPE = textwrap.dedent('''
    import json, os, sys
    args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
    out, seed, knob = args["--output_dir"], int(args["--seed"]), int(args["--knob"])
    if knob == 13:
        sys.exit("unlucky")
    if knob == 7:
        sys.exit(0)
    os.makedirs(out, exist_ok=True)
    records = [{"model": "x", "gamma": g, "seed": s, "rmse": knob + seed / 100 + s / 1e4, "loss": 1.0,
                "layer_losses": [2.0, 1.0]} for g in (0.0, 1.0) for s in range(int(args["--records"]))]
    json.dump({"records": records, "aggregates": []}, open(os.path.join(out, "ood_sweep.json"), "w"))
    json.dump({"num_layers": 1, "dual_variables": [knob]}, open(os.path.join(out, "layer_losses.json"), "w"))
''')


def write_study(tmp_path: Path, body: str, records: int = 1) -> Path:
    (tmp_path / "recipe.py").write_text(RECIPE)
    path = tmp_path / "study.yaml"
    path.write_text(f"recipe: {tmp_path / 'recipe.py'}\noutput_dir: {tmp_path / 'out'}\nresults: {tmp_path / 'res'}\n"
                    f"flags: {{records: {records}}}\n" + textwrap.dedent(body))  # fmt: skip
    return path


def test_every_failure_reported_by_name_the_rest_done(tmp_path, capsys):
    ok_sweep = tmp_path / "res" / "sweep.json"
    path = write_study(tmp_path, f"""
        stages:
          - seeds: [0]
            runs:
              - {{label: crash, flags: {{knob: 13}}}}
              - {{label: silent, flags: {{knob: 7}}}}
              - {{label: ok, flags: {{knob: 1}}}}
        measure:
          - {{command: "report nope.json", stdout: failed.md}}
          - {{command: "report {ok_sweep} --by_training_seed --metric rmse", stdout: measured.md}}
        reports:
          - {{command: "report nope.json", stdout: broken.md}}
          - {{command: "report sweep.json --by_training_seed --metric rmse", stdout: table.md}}
    """)
    assert main([str(path)]) == 1
    out = capsys.readouterr().out
    # each failure by name, with what went wrong, in the summary at the end
    summary = out.split("failed; the rest is done:")[1]
    assert "crash s0: the recipe failed" in summary
    assert f"silent s0: the recipe exited 0 without writing ood_sweep.json in {tmp_path / 'out' / 'silent' / 's0'}" \
        in summary  # fmt: skip
    assert f"{tmp_path / 'res' / 'failed.md'}: exited non-zero" in summary
    assert "report 'report nope.json'" in summary
    assert "4 run(s) or measurement(s) failed" in out
    # the rest is done: the good run merged and summarised, its measurement and its report written
    records = json.loads(ok_sweep.read_text())["records"]
    assert {(r["model"], r["gamma"], r["rmse"]) for r in records} == {("ok", 0.0, 1.0), ("ok", 1.0, 1.0)}
    assert list(json.loads((tmp_path / "res" / "runs.json").read_text())) == ["ok s0"]
    assert "| 1 |" in (tmp_path / "res" / "table.md").read_text()
    assert "| 1 |" in (tmp_path / "res" / "measured.md").read_text()
    # a failed measurement leaves no file (it would pass for done next time), a failed report none either
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == [
        "measured.md", "runs.json", "runs.json.lock", "sweep.json", "sweep.json.lock", "table.md"]  # fmt: skip


def test_two_workers_keep_every_record(tmp_path):
    """Two `hf-cut study` processes share 20 runs whose merges into one sweep file overlap in time: every run and
    every record is in the results, each run trained exactly once."""
    runs = "".join(f"      - {{label: r{i}, flags: {{knob: {i + 20}}}}}\n" for i in range(20))
    reports = 'reports:\n  - {command: "report sweep.json --by_training_seed --metric rmse --rows models", stdout: t.md}\n'
    path = write_study(tmp_path, "stages:\n  - seeds: [0]\n    runs:\n" + runs + reports, records=400)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    workers = [subprocess.Popen([sys.executable, "-m", "hf_cut", "study", str(path)], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]  # fmt: skip
    logs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], logs
    trained = [line for log in logs for line in log.splitlines() if "recipe.py" in line]
    assert len(trained) == 20, trained  # no run trained twice, none skipped
    assert all(log.count("recipe.py") > 0 for log in logs), "both workers took runs"
    records = json.loads((tmp_path / "res" / "sweep.json").read_text())["records"]
    assert len(records) == 20 * 2 * 400
    assert {(r["model"], r["rmse"]) for r in records} == {(f"r{i}", i + 20 + s / 1e4) for i in range(20)
                                                          for s in range(400)}  # fmt: skip
    assert sorted(json.loads((tmp_path / "res" / "runs.json").read_text())) == sorted(f"r{i} s0" for i in range(20))
    # the reports are written by the worker that finished last, from every run: one row per run
    rows = [line.split(" | ")[0].strip("| ") for line in (tmp_path / "res" / "t.md").read_text().splitlines()]
    assert {f"r{i}" for i in range(20)} <= set(rows), rows


def test_a_claim_whose_process_is_gone_is_reported(tmp_path, capsys):
    path = write_study(tmp_path, """
        stages:
          - seeds: [0]
            runs:
              - {label: a, flags: {knob: 1}}
              - {label: b, flags: {knob: 2}}
    """)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    claim = tmp_path / "out" / "b" / "s0" / ".claim"
    claim.mkdir(parents=True)
    (claim / "owner").write_text(f"{__import__('socket').gethostname()} {dead.stdout.strip()}\n")
    assert main([str(path)]) == 1
    out = capsys.readouterr().out
    assert f"b s0: claimed by a process that is gone; remove {claim} to run it again" in out
    assert list(json.loads((tmp_path / "res" / "runs.json").read_text())) == ["a s0"]  # the other run is done


def test_a_failed_report_leaves_its_file_as_it_was(tmp_path):
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "table.md").write_text("committed table\n")
    path = write_study(tmp_path, """
        stages:
          - seeds: [0]
            runs:
              - {label: a, flags: {knob: 1}}
        reports:
          - {command: "report sweep.json --by_training_seed --metric rmse", stdout: table.md, heading: "## one"}
          - {command: "report nope.json", stdout: table.md, heading: "## two"}
    """)
    assert main([str(path)]) == 1
    assert (tmp_path / "res" / "table.md").read_text() == "committed table\n"


WRITER = textwrap.dedent('''
    import sys, time
    from hf_cut.files import atomic_write
    with atomic_write(sys.argv[1]) as f:
        f.write('{"records": [' + "1, " * 100000)
        f.flush()
        print("half written", flush=True)
        time.sleep(60)
        f.write("1]}")
''')


def test_a_writer_killed_mid_write_leaves_the_previous_file(tmp_path):
    target = tmp_path / "sweep.json"
    write_json(target, {"records": [1, 2]})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True, env=env)
    assert writer.stdout.readline().strip() == "half written"
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    assert json.loads(target.read_text()) == {"records": [1, 2]}


def test_atomic_write_keeps_the_file_when_the_block_raises(tmp_path):
    target = tmp_path / "table.md"
    target.write_text("before")
    with pytest.raises(RuntimeError), atomic_write(target) as f:
        f.write("half")
        raise RuntimeError("report failed")
    assert target.read_text() == "before" and [p.name for p in tmp_path.iterdir()] == ["table.md"]
    with atomic_write(target) as f:
        f.write("after")
    assert target.read_text() == "after" and oct(target.stat().st_mode & 0o777) == "0o644"
