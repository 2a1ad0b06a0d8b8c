"""What guided promises about the disk: plain names, deletes only inside their folder, whole-file writes
that never replace a special file, caches that notice every change and never stop a run."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from guided.errors import UserError
from guided.pipeline.runner import Stage, run_one
from guided.storage.io import atomic_write_text, check_name, remove_inside
from guided.training.data import load_dataset
from tests.guided.test_data import make_tree


@pytest.mark.parametrize("name", ["slimming", "l1-norm_0.4", "VGG16", "a.b", "x" * 100])
def test_plain_names_are_accepted(name):
    assert check_name(name, "[[prune]] name") == name


@pytest.mark.parametrize(
    "name", ["../x", "..", ".", "a/b", "/tmp/x", "a/../b", "", ".hidden", "-flag", "x" * 101, "a\\b", "a b", 5, None]
)
def test_names_that_are_paths_are_refused(name):
    with pytest.raises(UserError, match="not a plain name"):
        check_name(name, "[[prune]] name")


def test_remove_inside_deletes_only_below_its_root(tmp_path):
    root, outside = tmp_path / "study", tmp_path / "precious"
    (root / "stages" / "a").mkdir(parents=True)
    (root / "stages" / "a" / "f").write_text("x")
    outside.mkdir()
    (outside / "keep").write_text("keep")
    for bad in (root, tmp_path, outside, root / ".." / "precious", root / "stages" / ".." / ".." / "precious"):
        with pytest.raises(UserError, match="does not lie inside"):
            remove_inside(bad, root)
    (root / "stages" / "link").symlink_to(outside, target_is_directory=True)  # a link is removed, not followed
    remove_inside(root / "stages" / "link", root)
    assert not os.path.lexists(root / "stages" / "link") and (outside / "keep").read_text() == "keep"
    remove_inside(root / "stages" / "a", root)
    assert not (root / "stages" / "a").exists()
    remove_inside(root / "stages" / "gone", root)  # nothing there: nothing to do
    assert (outside / "keep").read_text() == "keep"


def test_the_runner_never_deletes_a_stale_stage_outside_the_study(tmp_path):
    out, victim = tmp_path / "study", tmp_path / "victim"
    (out / "stages").mkdir(parents=True)
    victim.mkdir()
    (victim / "result.json").write_text("{}")
    stage = Stage("../../victim", "train", {}, lambda ctx: {})  # a folder that exists without stage.json: stale
    with pytest.raises(UserError, match="does not lie inside"):
        run_one(stage, out, "f" * 16, log=lambda _: None)
    assert (victim / "result.json").read_text() == "{}"


@pytest.mark.parametrize("target", ["/dev/full", "/dev/null"])
def test_an_atomic_write_never_replaces_a_device_or_a_link_to_one(tmp_path, target):
    link = tmp_path / "link"
    link.symlink_to(target)
    for path, refusal in ((Path(target), "not a regular file"), (link, "is a symbolic link")):
        with pytest.raises(UserError, match=refusal):
            atomic_write_text(path, "data")
        assert not Path(target).is_file() and Path(target).exists()
    assert os.readlink(link) == target


def test_a_write_the_file_system_refuses_names_the_file_not_its_temporary(tmp_path, monkeypatch):
    target = tmp_path / "spec.json"
    target.write_text("old")

    def immutable(src, dst):
        raise PermissionError(errno.EPERM, "Operation not permitted", src)

    monkeypatch.setattr(os, "replace", immutable)
    with pytest.raises(OSError) as caught:
        atomic_write_text(target, "new")
    assert caught.value.filename == str(target)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["spec.json"]


def test_the_image_cache_sees_an_image_moved_to_another_class(tmp_path):
    root, cache = make_tree(tmp_path / "tree"), tmp_path / "cache"
    first = load_dataset(f"imagefolder:{root}", cache_dir=cache)
    moved = root / "train" / "cat" / "0.png"
    os.rename(moved, root / "train" / "ant" / "moved.png")  # same size, same mtime, same count
    again = load_dataset(f"imagefolder:{root}", cache_dir=cache)
    assert list(first.train.labels) == [0, 0, 0, 1, 1, 1] and list(again.train.labels) == [0, 0, 0, 0, 1, 1]


@pytest.mark.parametrize("kind", ["a file", "read-only"])
def test_an_unusable_cache_costs_time_not_the_run(tmp_path, kind, capsys):
    root = make_tree(tmp_path / "tree")
    cache = tmp_path / "cache"
    if kind == "a file":
        cache.write_text("not a folder")
    else:
        cache.mkdir()
        cache.chmod(0o500)
        if os.geteuid() == 0:  # root ignores permission bits: a file below the cache path does the same
            shutil.rmtree(cache)
            cache.write_text("x")
            cache = cache / "below"
    data = load_dataset(f"imagefolder:{root}", cache_dir=cache)
    assert len(data.train) == 6
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "cannot keep the decoded images" in err


def test_a_corrupt_or_negative_latency_cache_is_timed_again(tmp_path, capsys):
    from guided.timing.latency import LatencyTable

    table = LatencyTable("cpu", batch_size=2, cache=tmp_path, threads=1)
    table.path.parent.mkdir(parents=True, exist_ok=True)
    table.path.write_text('{"a": -8.0, "b": 0.001, "c": "x"}')
    again = LatencyTable("cpu", batch_size=2, cache=tmp_path, threads=1)
    assert again.seconds == {"b": 0.001}
    assert "2 time(s) that are not positive seconds" in capsys.readouterr().err
    table.path.write_text("{broken")
    assert LatencyTable("cpu", batch_size=2, cache=tmp_path, threads=1).seconds == {}
    assert "unreadable" in capsys.readouterr().err


def test_a_closed_pipe_ends_quietly():
    proc = subprocess.run(
        f"{sys.executable} -m guided models | head -1", shell=True, capture_output=True, text=True, timeout=120
    )
    assert proc.stdout.strip() and proc.stderr == ""


def test_an_image_above_the_pixel_limit_is_refused(tmp_path):
    root = make_tree(tmp_path / "tree")
    Image.fromarray(np.zeros((9000, 8000), np.uint8)).save(root / "train" / "cat" / "big.png")  # 72M pixels
    with pytest.raises(UserError, match="above the 67,108,864"):
        load_dataset(f"imagefolder:{root}", cache_dir=tmp_path / "cache")


def test_an_immutable_output_file_is_one_line_naming_it(tmp_path, capsys):
    """A real immutable file (``chattr +i``, root only): the write is refused in one line naming the file."""
    from guided.cli import main

    target = tmp_path / "spec.json"
    target.write_text("old")
    chattr = shutil.which("chattr")
    if os.geteuid() != 0 or not chattr or subprocess.run([chattr, "+i", str(target)]).returncode != 0:
        pytest.skip("needs root and a file system with the immutable attribute")
    try:
        assert main(["spec", "--arch", "vgg-tiny", "--out", str(target)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(target) in err[0] and ".tmp" not in err[0], err
        assert target.read_text() == "old"
    finally:
        subprocess.run([chattr, "-i", str(target)])
    assert [p.name for p in tmp_path.iterdir()] == ["spec.json"]
