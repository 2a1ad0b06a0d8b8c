"""Every file guided writes or locks, planted as a symbolic link to a file outside the output: refused in one
line, exit 2, the link's target byte for byte unchanged (the attacker's case: a shared folder where someone
else placed the link before a ``--resume``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from guided.cli import main

pytestmark = pytest.mark.slow  # one tiny study and one tiny search (~1 min on 2 cores)

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "study-tiny-digits.toml")
SEARCH = ["search", "--arch", "vgg-tiny", "--dataset", "digits", "--train-subset", "256", "--batch-size", "64",
          "--epochs", "1", "--budget", "params=4000", "--trials", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("links")
    assert main(["run", TINY, "--out", str(base / "study")]) == 0
    assert main([*SEARCH, "--out", str(base / "search")]) == 0
    return {"study": base / "study", "search": base / "search"}


# (what, the folder kind, the file inside it that becomes a link, the command that writes or locks it)
PLANTED = [
    ("study lock", "study", ".guided.lock", ["run", TINY, "--resume"]),
    ("runs table", "study", "runs.csv", ["run", TINY, "--resume"]),
    ("summary record", "study", "summary.json", ["run", TINY, "--resume"]),
    ("report", "study", "report.md", ["run", TINY, "--resume"]),
    ("search lock", "search", ".guided.lock", SEARCH),
    ("search journal", "search", "study.journal", [*SEARCH[:-1], "2"]),
]


@pytest.mark.parametrize("case", PLANTED, ids=[c[0] for c in PLANTED])
def test_a_planted_link_is_refused_and_its_target_kept(case, finished, tmp_path, capsys):
    what, kind, name, argv = case
    folder = tmp_path / kind
    shutil.copytree(finished[kind], folder, symlinks=True)
    if kind == "study":  # a new report title: the report stage renders everything again
        retitled = tmp_path / "retitled.toml"
        retitled.write_text(Path(TINY).read_text() + '\n[report]\ntitle = "retitled"\n')
        argv = [a if a != TINY else str(retitled) for a in argv]
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    planted = folder / name
    planted.unlink(missing_ok=True)
    planted.symlink_to(victim)
    capsys.readouterr()
    code = main([*argv, "--out", str(folder)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (what, code, err)
    assert len(lines) == 1 and "Traceback" not in err, (what, err)
    assert "link" in lines[0], (what, lines[0])
    assert victim.read_text() == "precious\n", what
    assert planted.is_symlink(), what


def test_a_link_planted_among_the_report_tables_is_removed_never_followed(finished, tmp_path, capsys):
    """The report owns ``tables/`` and clears it before writing the tables again: a link there is deleted as
    a link (`guided.storage.io.remove_inside`), and what it pointed at stays as it was."""
    folder = tmp_path / "study"
    shutil.copytree(finished["study"], folder, symlinks=True)
    retitled = tmp_path / "retitled.toml"
    retitled.write_text(Path(TINY).read_text() + '\n[report]\ntitle = "retitled"\n')
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (folder / "tables" / "bases.csv").unlink()
    (folder / "tables" / "bases.csv").symlink_to(victim)
    assert main(["run", str(retitled), "--resume", "--out", str(folder)]) == 0
    assert victim.read_text() == "precious\n"
    assert not (folder / "tables" / "bases.csv").is_symlink() and (folder / "tables" / "bases.csv").is_file()


def test_out_given_as_a_link_to_a_folder_is_refused_by_every_command(finished, tmp_path, capsys):
    target = tmp_path / "system"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    run = finished["study"] / "stages" / "source" / "base-sparse-s0"
    commands = {
        "train": ["train", "--arch", "vgg-tiny", "--dataset", "digits", "--epochs", "1"],
        "prune": ["prune", "--method", "l1-norm", "--checkpoint", str(run), "--ratio", "0.5"],
        "run": ["run", TINY],
        "search": SEARCH,
        "quickstart": ["quickstart"],
    }
    for name, argv in commands.items():
        capsys.readouterr()
        assert main([*argv, "--out", str(link)]) == 2, name
        err = capsys.readouterr().err.strip()
        assert "symbolic link" in err and len(err.splitlines()) == 1, (name, err)
        assert list(target.iterdir()) == [], name
