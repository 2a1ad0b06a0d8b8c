"""The ``guided`` command: a table of subcommands, each a thin call into the library.

``main(argv) -> int`` is what the console script and ``python -m guided`` run, and what tests call
in-process. User errors print one line to stderr and return 2; nothing else is caught. Option
defaults come from the code, then (``retrain``) the source run, then a ``--config`` TOML file, then flags.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from guided import __version__
from guided.commands import basic, designs, exporting, plots, pruning, searching, studies, summaries, training
from guided.commands.common import Command
from guided.errors import USER_ERRORS, UserError, memory_error
from guided.storage.io import read_toml, type_ok
from guided.timing import threads

__all__ = ["main", "COMMANDS", "build_parser", "apply_config"]

COMMANDS: dict[str, Command] = {
    **basic.COMMANDS,
    **training.COMMANDS,
    **pruning.COMMANDS,
    **exporting.COMMANDS,
    **summaries.COMMANDS,
    **designs.COMMANDS,
    **plots.COMMANDS,
    **searching.COMMANDS,
    **studies.COMMANDS,
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (what is wrong, and where to read more), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full parser: one subparser per entry of `COMMANDS` (``parser.subparsers`` maps name to it)."""
    parser = _Parser(
        prog="guided",
        description="Pruning as architecture discovery: train, prune, summarise, design, search.",
    )
    parser.add_argument("--version", action="version", version=f"guided {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    subparsers = {}
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(
            name,
            help=cmd.help,
            description=cmd.help[0].upper() + cmd.help[1:] + ".",
            epilog=f"examples:\n  {cmd.examples}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.add_args(p)
        subparsers[name] = p
    parser.subparsers = subparsers
    return parser


def apply_config(parser: argparse.ArgumentParser, path: str) -> None:
    """Use a TOML file's keys (option names, ``-`` or ``_``) as defaults of ``parser``; flags still win.

    Unknown keys and values of the wrong type are refused before anything runs.
    """
    table = read_toml(path)
    actions = {a.dest: a for a in parser._actions if a.dest not in ("help", "config")}
    defaults = {}
    for key, value in table.items():
        dest = key.replace("-", "_")
        if dest not in actions:
            raise UserError(f"{path}: unknown key {key!r}; it must be one of this command's options")
        action = actions[dest]
        expected = action.type.__name__ if action.type in (int, float, str) else "str"
        if action.type not in (None, int, float, str):  # a parsing function (e.g. ratios): its own forms
            expected = "str | int | float | list[float]"
        if action.nargs == 0 or isinstance(action.default, bool):
            expected = "bool"
        elif action.nargs in ("+", "*"):
            expected = f"list[{expected}]"
        if not type_ok(value, expected):
            raise UserError(f"{path}: key {key!r} must be {expected}, got {value!r}")
        defaults[dest] = value
    parser.set_defaults(**defaults)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``guided`` command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    terminated = _stop_on_sigterm()
    try:
        command = COMMANDS[args.command]
        if command.defaults:
            parser.subparsers[args.command].set_defaults(**command.defaults(args))
            args = parser.parse_args(argv)
        if getattr(args, "config", None):
            apply_config(parser.subparsers[args.command], args.config)
            args = parser.parse_args(argv)
        if hasattr(args, "threads"):  # a command that computes: set its CPU thread budget first
            threads.configure(args.threads)
        return COMMANDS[args.command].run(args)
    except USER_ERRORS as exc:
        print(f"guided {args.command}: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `guided models | head -1`: the reader left; say nothing more
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return 0
    except (MemoryError, RuntimeError) as exc:  # a size that does not fit: one line; any other error is a bug
        error = memory_error(exc)
        if error is None:
            raise
        print(f"guided {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system said no (permissions, a full disk): not a bug to trace
        where = f" {exc.filename}" if exc.filename else ""
        print(f"guided {args.command}: error: cannot use{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2 if exc.errno in _PATH_ERRORS else 1
    except KeyboardInterrupt:
        terminated.quiet()
        what = "terminated" if terminated() else "interrupted"
        print(f"guided {args.command}: {what}; finished work is kept (rerun with --resume)", file=sys.stderr)
        return 143 if terminated() else 130
    finally:
        terminated.restore()


class _stop_on_sigterm:
    """Turn SIGTERM into the same orderly stop as Ctrl-C (locks released, workers ended, one line) while a
    command runs; calling it tells whether SIGTERM came; ``restore()`` puts the previous handler back. Only
    in the main thread, where handlers can be set."""

    def __init__(self) -> None:
        import signal
        import threading

        self.came, self.previous, self.others = False, None, {}
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._stop)
            self.others = {n: signal.signal(n, self._interrupt) for n in (signal.SIGINT, signal.SIGALRM)}
            self.hook = sys.unraisablehook
            sys.unraisablehook = self._unraisable

    def _unraisable(self, unraisable) -> None:
        """A dropped KeyboardInterrupt is repeated (`_interrupt`), not printed; anything else is."""
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            self.hook(unraisable)

    def _stop(self, signum, frame):
        self.came = True
        self._interrupt(signum, frame)

    def _interrupt(self, signum, frame):
        """Raise KeyboardInterrupt, and again every 0.2 s until the command stops: Python drops one raised
        inside a weakref callback or a finaliser (seen while a search ran), which would let the work go on."""
        import signal

        if signum != signal.SIGALRM or self.stopping:
            self.stopping = True
            signal.setitimer(signal.ITIMER_REAL, 0.2, 0.2)
            raise KeyboardInterrupt

    stopping = False

    def __call__(self) -> bool:
        return self.came

    def quiet(self) -> None:
        """The stop is being handled: no more repeats."""
        import signal

        if self.previous is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def restore(self) -> None:
        import signal

        if self.previous is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGTERM, self.previous)
            for n, handler in self.others.items():
                signal.signal(n, handler)
            sys.unraisablehook = self.hook


#: File-system refusals caused by the path given (exit 2, the user's to fix); others (a full disk, an I/O
#: error) exit 1.
_PATH_ERRORS = {
    getattr(__import__("errno"), name)
    for name in ("EACCES", "EPERM", "EROFS", "EEXIST", "ENOTDIR", "EISDIR", "ELOOP", "ENOENT", "ENAMETOOLONG")
}


def _one_line(message: str) -> str:
    """A message folded onto one line (an error is one line on stderr, whatever produced it)."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


if __name__ == "__main__":
    sys.exit(main())
