"""Interrupted work resumes to the same numbers, and one study folder has one runner.

Real processes (``python -m guided``), real signals: a small study with a search stage is stopped during
its search by SIGINT, by SIGTERM, and by SIGKILL of its worker processes, then resumed with ``--resume``;
its trials, best trial and report tables must equal those of an uninterrupted run. A standalone
``guided search`` killed (SIGKILL) mid-trial and started again must give the same trials and best. A
second ``guided run`` on a running study is refused, naming the first one's PID; once that one is killed,
``--resume`` proceeds. Every run uses one thread per training, so runs are bit-identical.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.studies import tiny_study, write_study

pytestmark = pytest.mark.slow  # about two minutes: a dozen short studies and searches in subprocesses

STUDY = tiny_study(
    {
        "study": {"name": "interrupted"},
        "data": {"train_subset": 800, "test_subset": None},  # the whole test split
        "train": {"epochs": 2},
        "prune": [{"name": "l1", "method": "l1-norm", "ratio": 0.4}],
        "design": {"pattern": "l1", "budgets": ["params=50%"], "pruned": False},
        "search": {"budget": "params=50%", "trials": 4, "epochs": 2, "validation": 0.2, "arms": ["seeded"]},
    }
)

SEARCH = ["--arch", "vgg-tiny", "--dataset", "digits", "--train-subset", "1000", "--batch-size", "64"]
SEARCH += ["--epochs", "2", "--budget", "params=4000", "--trials", "5", "--threads", "1"]


def guided(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("GUIDED_THREADS", None)
    return subprocess.Popen(
        [sys.executable, "-m", "guided", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a signal sent here reaches this process only, never pytest
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until ``path`` exists (the run reached that point); fails if the run ended first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the run ended before {path} appeared: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def workers_of(pid: int) -> list[int]:
    """The multiprocessing worker processes started by ``pid`` (not its resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and "spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def outcome(out: Path) -> dict:
    """What a resumed study must reproduce: the search's trials and best, every table's numbers (timings
    and timestamps aside) and the verdicts."""
    search = json.loads((out / "stages" / "search" / "seeded" / "done.json").read_text())["record"]
    tables = {}
    for path in sorted([*(out / "tables").glob("*.csv"), out / "runs.csv"]):
        df = pd.read_csv(path)
        measured = ("time", "timing", "img/s", "per_s", "datetime", "duration", "condition")
        timing = [c for c in df.columns if any(w in c for w in measured)]
        tables[path.name] = df.drop(columns=timing).astype(str).to_dict("records")  # str: NaN equals NaN
    verdicts = json.loads((out / "summary.json").read_text())["verdicts"]
    return {"search": search, "tables": tables, "verdicts": verdicts}


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("interrupts")
    write_study(base, STUDY)
    code, err = finish(guided("run", "study.toml", "--out", "reference", "--threads", "1", cwd=base))
    assert code == 0, err
    return {"base": base, "reference": outcome(base / "reference")}


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGKILL-workers", "SIGTERM-runner-with-workers"])
def test_a_study_stopped_during_its_search_resumes_to_the_same_report(study, how):
    """SIGTERM-runner-with-workers: the signal reaches the runner alone (as ``kill PID`` sends it), which must
    stop its busy workers rather than wait at exit for their stages (the search) to finish."""
    base, out = study["base"], f"stopped-{how}"
    jobs = ["--jobs", "2", "--threads", "2"] if "workers" in how else ["--threads", "1"]
    proc = guided("run", "study.toml", "--out", out, *jobs, cwd=base)
    wait_for(base / out / "stages" / "search" / "seeded" / "trials" / "trial-0001", proc)
    workers = workers_of(proc.pid)
    if how == "SIGKILL-workers":
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
    else:
        proc.send_signal(getattr(signal, how.split("-")[0]))
    code, err = finish(proc)
    assert code == {"SIGINT": 130, "SIGTERM": 143, "SIGKILL-workers": 2, "SIGTERM-runner-with-workers": 143}[how], err
    deadline = time.monotonic() + 5  # a killed worker is reaped by init once the runner is gone
    while [pid for pid in workers if Path(f"/proc/{pid}").exists()] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()], "a worker outlived the runner"
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (base / out / "stages" / "search" / "seeded" / "done.json").exists()  # stopped mid-search
    code, err = finish(guided("run", "study.toml", "--out", out, "--resume", "--threads", "1", cwd=base))
    assert code == 0, err
    again = outcome(base / out)
    assert again["search"] == study["reference"]["search"]
    assert again["tables"] == study["reference"]["tables"]
    assert again["verdicts"] == study["reference"]["verdicts"]


def test_a_standalone_search_killed_mid_trial_resumes_to_the_same_trials(tmp_path):
    code, err = finish(guided("search", *SEARCH, "--out", "whole", cwd=tmp_path))
    assert code == 0, err
    proc = guided("search", *SEARCH, "--out", "killed", cwd=tmp_path)
    wait_for(tmp_path / "killed" / "trials" / "trial-0002", proc)
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    code, err = finish(guided("search", *SEARCH, "--out", "killed", cwd=tmp_path))
    assert code == 0, err
    whole, resumed = (json.loads((tmp_path / d / "search.json").read_text()) for d in ("whole", "killed"))
    assert resumed["history"] == whole["history"] and resumed["best"] == whole["best"]
    assert resumed["trials"] == whole["trials"] == {**whole["trials"], "complete": 5, "running": 0, "fail": 0}


def test_one_runner_per_study_folder_and_a_killed_one_leaves_nothing_to_clean(study):
    base = study["base"]
    first = guided("run", "study.toml", "--out", "locked", "--threads", "1", cwd=base)
    wait_for(base / "locked" / "study.json", first)
    second = guided("run", "study.toml", "--out", "locked", "--resume", "--threads", "1", cwd=base)
    code, err = finish(second)
    assert code == 2 and f"PID {first.pid}" in err and len(err.strip().splitlines()) == 1, err
    first.send_signal(signal.SIGKILL)
    finish(first)
    code, err = finish(guided("run", "study.toml", "--out", "locked", "--resume", "--threads", "1", cwd=base))
    assert code == 0, err
    assert outcome(base / "locked") == study["reference"]


def test_resuming_a_finished_study_with_workers_starts_none_and_says_nothing_more(study):
    code, err = finish(guided("run", "study.toml", "--out", "reference", "--resume", "--jobs", "2", cwd=study["base"]))
    assert code == 0 and err == "", err
