"""Two search workers share one study on a real PostgreSQL server; one is killed mid-trial.

The server is a throwaway cluster on a free loopback port, owned by this test. Skipped, with the
reason, where no PostgreSQL server binary exists; CI installs one, so there it runs.
"""

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _server_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _as_owner(cmd: list[str], user: str | None) -> list[str]:
    return ["runuser", "-u", user, "--", *cmd] if user else cmd


@pytest.fixture(scope="module")
def postgres_url():
    initdb, pg_ctl = _server_bin("initdb"), _server_bin("pg_ctl")
    if not initdb or not pg_ctl:
        if os.environ.get("CI"):
            pytest.fail("CI must run this test, but no PostgreSQL server binary (initdb, pg_ctl) was found")
        pytest.skip("no PostgreSQL server binary (initdb, pg_ctl) found; install postgresql to run this test")
    user = None
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to own the test cluster")
        user = "postgres"
    root = Path(tempfile.mkdtemp(prefix="guided-pg-", dir="/tmp"))
    root.chmod(0o755)
    data = root / "data"
    data.mkdir()
    if user:
        shutil.chown(data, user)
        shutil.chown(root, user)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(
        _as_owner([initdb, "-D", str(data), "-A", "trust", "-U", "guided"], user), check=True, capture_output=True
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
    subprocess.run(
        _as_owner([pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"], user),
        check=True,
        capture_output=True,
    )
    # A role that must give a password (every other login is trusted): for the PGPASSWORD / PGPASSFILE test.
    hba = data / "pg_hba.conf"
    hba.write_text("host all secretive 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
    subprocess.run(_as_owner([pg_ctl, "-D", str(data), "reload"], user), check=True, capture_output=True)
    psql = [shutil.which("psql") or _server_bin("psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "guided", "postgres"]
    subprocess.run(
        [*psql, "-c", "CREATE ROLE secretive LOGIN SUPERUSER PASSWORD 'n0t-in-ps'"], check=True, capture_output=True
    )
    try:
        yield f"postgresql://guided@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_owner([pg_ctl, "-D", str(data), "-m", "immediate", "stop"], user), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _worker(url: str, out: Path) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "guided",
        "search",
        "--arch",
        "vgg-tiny",
        "--dataset",
        "digits",
        "--train-subset",
        "800",
        "--budget",
        "params=4000",
        "--trials",
        "6",
        "--epochs",
        "3",
        "--batch-size",
        "32",
        "--pruner",
        "none",
        "--storage",
        url,
        "--study-name",
        "shared",
        "--heartbeat",
        "1",
        "--out",
        str(out),
    ]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )


def test_killed_worker_trial_is_failed_and_retried_and_the_study_completes(postgres_url, tmp_path):
    import optuna

    # Worker b starts after a's trial has gone stale (heartbeat 1 s, grace 2 s), so its first trial fails and
    # re-queues it whatever the machine's load: started together, b could finish all six trials before the
    # grace period ends on a busy machine's clock, and a's trial would still read RUNNING.
    a, b = _worker(postgres_url, tmp_path / "a"), None
    try:
        deadline = time.time() + 180
        while not list((tmp_path / "a" / "trials").glob("trial-*")):  # worker a is inside a trial
            assert a.poll() is None and time.time() < deadline, "worker a never started a trial"
            time.sleep(0.05)
        killed_number = int(next((tmp_path / "a" / "trials").glob("trial-*")).name.split("-")[1])
        a.send_signal(signal.SIGKILL)
        a.wait()
        time.sleep(3.0)
        b = _worker(postgres_url, tmp_path / "b")
        out, _ = b.communicate(timeout=300)
        assert b.returncode == 0, out
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    trials = study.get_trials(deepcopy=False)
    states = {t.number: t.state for t in trials}
    assert states[killed_number] == optuna.trial.TrialState.FAIL
    assert sum(s == optuna.trial.TrialState.COMPLETE for s in states.values()) == 6
    assert not [n for n, s in states.items() if s == optuna.trial.TrialState.RUNNING]
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed_number]
    assert len(retried) == 1 and retried[0].state == optuna.trial.TrialState.COMPLETE
    assert retried[0].params == next(t for t in trials if t.number == killed_number).params
    assert len({t.number for t in trials}) == len(trials)  # nothing duplicated


@pytest.mark.parametrize(
    "case", list(enumerate(["Sl/ashPW42", "p@ss@word9", "co:lon:pw7", "pc%zz%9"])), ids=lambda c: c[1]
)
def test_password_reaches_no_output_and_no_file(postgres_url, case, tmp_path, capsys):
    """The server trusts every password, so each connects; none may be printed or written anywhere."""
    import json
    from urllib.parse import quote

    from guided.cli import main

    number, password = case
    url = postgres_url.replace("guided@", f"guided:{password}@")
    out = tmp_path / "search"
    argv = ["search", "--arch", "vgg-tiny", "--dataset", "digits", "--train-subset", "200", "--budget", "params=4000"]
    argv += ["--trials", "1", "--epochs", "1", "--batch-size", "32", "--pruner", "none", "--storage", url]
    argv += ["--study-name", f"password-{number}", "--out", str(out)]
    assert main(argv) == 0
    printed = "".join(capsys.readouterr())
    files = [f for f in out.rglob("*") if f.is_file()]
    assert files
    for spelling in {password, quote(password, safe="")}:
        assert spelling not in printed
        assert not [f for f in files if spelling.encode() in f.read_bytes()]
    recorded = json.loads((out / "search.json").read_text())["storage"]
    assert recorded == postgres_url.replace("guided@", "guided:***@")


def test_workers_with_the_same_seed_draw_different_trials(postgres_url, tmp_path):
    """Each worker of a shared study derives its own sampler seed (from --seed, host and --out)."""
    import optuna

    url = postgres_url
    cmd = [sys.executable, "-m", "guided", "search", "--arch", "vgg-tiny", "--dataset", "digits"]
    cmd += ["--train-subset", "200", "--budget", "params=4000", "--trials", "8", "--epochs", "1", "--batch-size", "32"]
    cmd += ["--pruner", "none", "--seed", "0", "--storage", url, "--study-name", "same-seed"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    workers = [
        subprocess.Popen([*cmd, "--out", str(tmp_path / w)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        for w in ("a", "b")
    ]
    for w in workers:
        out, _ = w.communicate(timeout=300)
        assert w.returncode == 0, out
    trials = optuna.load_study(study_name="same-seed", storage=url).get_trials(deepcopy=False)
    drawn = [tuple(sorted(t.params.items())) for t in trials]
    assert len(drawn) >= 8
    assert len(set(drawn)) == len(drawn), "two trials evaluated the same parameters"


def test_the_password_comes_from_pgpassword_or_pgpassfile_not_the_command_line(postgres_url, tmp_path, monkeypatch):
    """A role that needs a password connects with a URL that holds none: libpq reads PGPASSWORD, else the
    PGPASSFILE; without either the server refuses it, in one line. No warning: nothing secret was typed."""

    url = postgres_url.replace("guided@", "secretive@")
    host_port = url.split("@", 1)[1].split("/", 1)[0]

    def search(name: str) -> tuple[int, str]:
        argv = ["search", "--arch", "vgg-tiny", "--dataset", "digits", "--train-subset", "200"]
        argv += ["--budget", "params=4000", "--trials", "1", "--epochs", "1", "--batch-size", "32"]
        argv += ["--storage", url, "--study-name", name, "--out", str(tmp_path / name)]
        proc = subprocess.run([sys.executable, "-m", "guided", *argv], capture_output=True, text=True)
        return proc.returncode, proc.stderr

    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    code, err = search("no-password")
    assert code == 2 and "cannot open storage" in err and len(err.strip().splitlines()) == 1, err
    monkeypatch.setenv("PGPASSWORD", "n0t-in-ps")
    code, err = search("from-environment")
    assert code == 0 and "warning" not in err, err
    monkeypatch.delenv("PGPASSWORD")
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"{host_port}:postgres:secretive:n0t-in-ps\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    code, err = search("from-passfile")
    assert code == 0 and "warning" not in err, err
