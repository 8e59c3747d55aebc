"""train, promote, rollback and predict: thin shells over the model jobs."""

from __future__ import annotations

import argparse
import os
import sys

from ml_platform.cli.runs import op_config, run_job


def add_parsers(commands) -> None:
    train = commands.add_parser("train", help="train one week's price model")
    train.add_argument("--week", required=True, help="the week's Monday, YYYY-MM-DD")
    train.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a hyperparameter, e.g. learning_rate=0.05 (repeatable)",
    )
    train.set_defaults(handler=run_train)

    promote = commands.add_parser("promote", help="make a trained model week live")
    promote.add_argument("--week", required=True)
    promote.add_argument("--reason", required=True)
    promote.set_defaults(handler=lambda args: promote_week(args.week, args.reason))

    rollback = commands.add_parser("rollback", help="make the previous champion live again")
    rollback.add_argument("--reason", required=True)
    rollback.set_defaults(handler=lambda args: run_rollback(args.reason))

    predict = commands.add_parser("predict", help="quote a day's shipments with the champion")
    predict.add_argument("--date", required=True, help="first day, YYYY-MM-DD")
    predict.add_argument("--to", help="last day (default: the same day)")
    predict.set_defaults(
        handler=lambda args: run_job("predict_prices", first=args.date, last=args.to or args.date)
    )


def run_train(args: argparse.Namespace) -> int:
    params = dict(parse_param(p) for p in args.param)
    return run_job(
        "train_price_model", partition=args.week, config=op_config("models__price_model", params)
    )


def parse_param(text: str) -> tuple[str, float | int]:
    name, _, value = text.partition("=")
    if not value:
        raise SystemExit(f"--param {text!r}: expected NAME=VALUE")
    number = float(value)
    return name, int(number) if number.is_integer() and "." not in value else number


def promote_week(week: str, reason: str) -> int:
    config = {
        "week": week,
        "reason": reason,
        "promoted_by": f"manual ({os.environ.get('USER', 'cli')})",
    }
    return run_job("promote_champion", config=op_config("models__champion", config))


def run_rollback(reason: str) -> int:
    """Promote the model that was live before the current champion."""
    import dagster as dg

    from ml_platform.provenance.champion import champion_history

    with dg.DagsterInstance.get() as instance:
        history = champion_history(instance)
    if len(history) < 2:
        print("nothing to roll back to: fewer than two promotions so far", file=sys.stderr)
        return 1
    previous = history[-1]["previous_week"]
    print(f"rolling back from week {history[-1]['model_week']} to week {previous}")
    return promote_week(previous, f"rollback: {reason}")
