"""The command line, run in-process through `guided.cli.main`."""

import json
import subprocess
import sys

import pytest

from guided.cli import COMMANDS, build_parser, main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_every_subcommand_has_help_with_examples(capsys):
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        assert "examples:" in capsys.readouterr().out
    assert set(COMMANDS) <= set(build_parser()._subparsers._group_actions[0].choices)


def test_cost_json_reports_published_vgg16_counts(capsys):
    code, out, _ = run(capsys, "cost", "--arch", "vgg16", "--num-classes", "10", "--json")
    data = json.loads(out)
    assert code == 0
    assert data["params"] == 14_987_722 and data["flops"] == 2 * data["macs"]
    assert {"name", "stage", "in_ch", "out_ch", "kernel", "out_size", "params", "macs"} <= set(data["layers"][0])


def test_cost_table_is_readable(capsys):
    code, out, _ = run(capsys, "cost", "--arch", "resnet20")
    assert code == 0
    assert "stages.2.2.conv2" in out and "params 269,722" in out


def test_spec_written_by_hand_edit_and_fed_back(capsys, tmp_path):
    path = tmp_path / "vgg.json"
    assert run(capsys, "spec", "--arch", "vgg16", "--out", str(path))[0] == 0
    data = json.loads(path.read_text())
    data["stages"] = [[32, 64], [128, 128], [256] * 3, [256] * 3, [256] * 3]  # VGG-16-A
    path.write_text(json.dumps(data))
    code, out, _ = run(capsys, "cost", "--spec", str(path), "--json")
    assert code == 0 and json.loads(out)["params"] == 5_397_034


@pytest.mark.parametrize(
    "argv, message",
    [
        (["cost", "--arch", "vgg17"], "unknown model 'vgg17'"),
        (["cost", "--arch", "vgg16", "--width-mult", "0"], "--width-mult must be positive"),
        (["cost", "--arch", "resnet56", "--head", "slim"], "has no head option"),
        (["cost", "--spec", "/nonexistent/spec.json"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ('{"family": "vgg", "stages": [[0], [8], [8], [8], [8]], "head": "l1"}', "stages[0][0] = 0"),
        ('{"family": "vgg", "stages": [[8]], "head": "l1", "depth": 3}', "unknown spec key"),
    ],
)
def test_bad_spec_files_are_one_line_errors(capsys, tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    code, _, err = run(capsys, "cost", "--spec", str(path))
    assert code == 2 and message in err and str(path) in err


@pytest.mark.slow
def test_module_entry_point_runs_as_a_subprocess():
    proc = subprocess.run([sys.executable, "-m", "guided", "cost", "--arch", "vgg17"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("guided cost: error: unknown model")


def test_readme_cli_reference_matches_the_parsers():
    """The reference (docs/cli.md) is what `python -m guided.clidoc` generates from argparse, and it names every
    subcommand and every option of each."""
    from pathlib import Path

    from guided.clidoc import END, START, reference

    readme = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    block = readme.split(START, 1)[1].split(END, 1)[0]
    assert block.strip() == reference().strip(), "docs/cli.md is stale: run `python -m guided.clidoc`"
    parser = build_parser()
    for name, sub in parser.subparsers.items():
        section = block.split(f"### `guided {name}`", 1)[1].split("### ", 1)[0]
        for action in sub._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}" in section or f", {option}" in section, f"guided {name} {option}"
