"""Helpers for tests that start the platform's commands as processes."""

import signal


def signals_as_from_a_terminal() -> None:
    """In the child: SIGINT and SIGTERM with their default dispositions.

    A suite started in the background (``cmd &`` in a script) runs with SIGINT ignored, and
    after an in-process Dagster run SIGTERM too (Dagster maps SIGTERM to SIGINT's handler);
    ignored dispositions survive exec and the commands rightly keep them, so the test resets
    them as a terminal's Ctrl-C or a supervisor's SIGTERM would find them.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
