"""`guided.storage.provenance.git_revision`: a revision names the code exactly, also before it is committed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from guided.storage.provenance import git_revision


def git(root: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True, env=env).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "guided").mkdir()
    (tmp_path / "guided" / "a.py").write_text("x = 1\n")
    (tmp_path / "README.md").write_text("docs\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "first")
    return tmp_path


def test_clean_edited_and_new_code_get_distinct_revisions(repo):
    head = git(repo, "rev-parse", "HEAD").strip()
    assert git_revision(repo) == head
    (repo / "README.md").write_text("other docs\n")  # not code: still the commit
    assert git_revision(repo) == head
    (repo / "guided" / "a.py").write_text("x = 2\n")
    edited = git_revision(repo)
    assert edited.startswith(f"{head}+dirty.")
    (repo / "guided" / "b.py").write_text("y = 1\n")  # a new file git does not track yet
    with_new = git_revision(repo)
    assert with_new.startswith(f"{head}+dirty.") and with_new != edited
    (repo / "guided" / "b.py").write_text("y = 2\n")
    assert git_revision(repo) not in (edited, with_new)


def test_a_tree_without_git_can_declare_its_revision(tmp_path, monkeypatch):
    monkeypatch.delenv("GUIDED_REVISION", raising=False)
    assert git_revision(tmp_path) == "unknown"
    monkeypatch.setenv("GUIDED_REVISION", "abc123")
    assert git_revision(tmp_path) == "abc123 (declared)"
