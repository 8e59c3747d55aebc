"""Bad input and expected failures as one clear line, never a traceback.

Arguments are checked while parsing (argparse ``type=`` functions below), so a wrong date
or hyperparameter exits with code 2 before anything runs. Errors the platform expects at
run time (an unknown partition, a missing record) reach ``main`` and print one line with
exit code 1; ``ML_PLATFORM_TRACEBACK=1`` re-raises them for whoever debugs the CLI.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from typing import NoReturn

TRACEBACK_ENV = "ML_PLATFORM_TRACEBACK"


class CliError(Exception):
    """A failure whose message is already the one line the user should read."""

    exit_code = 1


class UsageError(CliError):
    """Arguments that parse one by one but do not make sense together (exit code 2)."""

    exit_code = 2


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def iso_date(text: str) -> date:
    """A calendar day written YYYY-MM-DD."""
    try:
        return date.fromisoformat(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a day written YYYY-MM-DD ({e})"
        ) from None


def monday(text: str) -> date:
    """A model week, named by its Monday."""
    day = iso_date(text)
    if day.weekday() != 0:
        raise argparse.ArgumentTypeError(
            f"{text} is a {day:%A}; a model week is named by its Monday"
        )
    return day


def did_you_mean(name: str, known) -> str:
    """ "did you mean X? " for the closest of ``known`` to a mistyped name, else ""."""
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1)
    return f"did you mean {close[0]}? " if close else ""


def storage_id(text: str) -> int:
    """A materialization's storage id: a positive whole number."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a storage id (a positive whole number)")
    return int(text)


def reason_text(text: str) -> str:
    """Why a model goes live or is rolled back: recorded with the promotion, so not empty."""
    if not text.strip():
        raise argparse.ArgumentTypeError("say why: the reason is recorded with the promotion")
    return text.strip()


def hyperparameter(text: str) -> tuple[str, float | int]:
    """NAME=NUMBER, e.g. learning_rate=0.05 or max_iter=200."""
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=VALUE, e.g. learning_rate=0.05")
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{name}={value}: the value must be a number, e.g. {name}=0.05"
        ) from None
    if number != number or number in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"{name}={value}: the value must be a finite number")
    return name, int(number) if number.is_integer() and "." not in value else number


def one_line(error: BaseException) -> str:
    """The first line of an error's message (its type where it has none)."""
    if isinstance(error, KeyError) and error.args:
        text = f"missing {error.args[0]!r}"
    else:
        text = str(error).strip()
    if not text:
        return type(error).__name__
    first = text.splitlines()[0]
    return first if len(first) <= 400 else first[:397] + "..."


def report(command: str, error: BaseException, context: str | None = None) -> int:
    """Print an expected failure as one line (exit code 1), or re-raise it when debugging."""
    if os.environ.get(TRACEBACK_ENV):
        raise error
    known = isinstance(error, CliError | LookupError) or _is_dagster_error(error)
    message = one_line(error) if known else f"{type(error).__name__}: {one_line(error)}"
    if context:
        message = f"{context}: {message}"
    hint = "" if known else f" ({TRACEBACK_ENV}=1 shows the traceback)"
    print(f"ml-platform {command}: {message}{hint}", file=sys.stderr)
    return getattr(error, "exit_code", 1)


def _is_dagster_error(error: BaseException) -> bool:
    dagster = sys.modules.get("dagster")
    return dagster is not None and isinstance(error, dagster.DagsterError)
