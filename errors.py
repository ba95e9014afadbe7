"""The one exception type that every module raises for a user's mistake, and the command-line entry
that reports it: one line on stderr and exit code 2, never a traceback."""

import sys
from collections.abc import Callable

Main = Callable[[list[str] | None], int | None]


class UserError(ValueError):
    """A mistake in what the user asked for: reported as one line, without a traceback."""


def say_stderr(line: str) -> None:
    """One write per line: under torchrun every rank shares stderr, and print's separate write of
    the newline lets two ranks' lines interleave."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def run_cli(main: Main, argv: list[str] | None = None, prog: str = "", interrupted: str = "interrupted") -> int:
    """Run a script's `main(argv)` as its command-line entry: its return value (None: 0) is the exit code; a
    UserError is one line on stderr ("[prog: ]error: ...") and exit code 2; Ctrl-C prints `interrupted`, exit 130."""
    try:
        return main(argv) or 0
    except UserError as e:
        say_stderr(f"{prog + ': ' if prog else ''}error: {e}")
        return 2
    except KeyboardInterrupt:
        say_stderr(interrupted)
        return 130
