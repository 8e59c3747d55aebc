"""train, promote, rollback and predict: thin shells over the model jobs."""

from __future__ import annotations

import argparse
import os
import sys

from ml_platform.cli.backfill_chunks import run_chunked_backfill
from ml_platform.cli.errors import (
    UsageError,
    did_you_mean,
    hyperparameter,
    iso_date,
    monday,
    reason_text,
    storage_id,
)
from ml_platform.cli.runs import check_calendar, op_config, run_job, verbose_option


def add_parsers(commands) -> None:
    train = commands.add_parser(
        "train", help="train one week's price model", parents=[verbose_option()]
    )
    train.add_argument("--week", type=monday, required=True, help="the week's Monday, YYYY-MM-DD")
    train.add_argument(
        "--param",
        action="append",
        type=parse_param,
        default=[],
        metavar="NAME=VALUE",
        help="a hyperparameter, e.g. learning_rate=0.05 (repeatable)",
    )
    train.add_argument(
        "--force",
        action="store_true",
        help="train again a week trained from the same features, code and hyperparameters",
    )
    train.set_defaults(handler=run_train)

    promote = commands.add_parser("promote", help="make a trained model live")
    which = promote.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--week", type=monday, help="the week's latest model (its Monday, YYYY-MM-DD)"
    )
    which.add_argument(
        "--model",
        type=storage_id,
        metavar="STORAGE_ID",
        help="one exact model version: its price_model materialization's storage id "
        "(`ml-platform explain` and `last-training` name it)",
    )
    promote.add_argument("--reason", type=reason_text, required=True)
    promote.set_defaults(handler=run_promote)

    rollback = commands.add_parser("rollback", help="make the previous champion live again")
    rollback.add_argument("--reason", type=reason_text, required=True)
    rollback.set_defaults(handler=lambda args: run_rollback(args.reason))

    predict = commands.add_parser(
        "predict", help="quote a day's shipments with the champion", parents=[verbose_option()]
    )
    predict.add_argument("--date", type=iso_date, required=True, help="first day, YYYY-MM-DD")
    predict.add_argument("--to", type=iso_date, help="last day (default: the same day)")
    predict.add_argument(
        "--force",
        action="store_true",
        help="quote again the days already quoted by the live champion from unchanged features",
    )
    predict.set_defaults(handler=run_predict)


def run_train(args: argparse.Namespace) -> int:
    params = checked_hyperparameters(dict(args.param))  # (name, number) pairs from parse_param
    return train_week(args.week.isoformat(), params, force=args.force)


def checked_hyperparameters(params: dict) -> dict:
    """The --param values as the training config reads them (``max_iter=300.0`` is 300), or
    a usage error naming the parameter: a misspelled name would otherwise be dropped, and
    a week trained with the defaults reported up to date."""
    import pydantic

    from ml_platform.assets.price_model import TrainingConfig

    known = list(TrainingConfig.model_fields)
    for name in params:
        if name not in known:
            raise UsageError(
                f"--param {name}: no such hyperparameter; {did_you_mean(name, known)}"
                f"they are {', '.join(known)}"
            )
    try:
        config = TrainingConfig(**params)
    except pydantic.ValidationError as e:
        error = e.errors()[0]
        name = str(error["loc"][0])
        raise UsageError(
            f"--param {name}={params[name]}: {error['msg'].lower().replace('input should be', 'must be')}"
        ) from None
    return {name: getattr(config, name) for name in params}


def train_week(week: str, params: dict, force: bool = False) -> int:
    """Train the week's model, unless its latest one was made from the same features, code
    and hyperparameters (``force`` trains anyway): training it again would make the same."""
    if not force:
        run_id = _current_model_run(week, params)
        if run_id is not None:
            print(
                f"up to date, not trained: price_model {week} (run {run_id}) was trained from "
                "the same features, code and hyperparameters (--force trains again)",
                flush=True,
            )
            return 0
    return run_job(
        "train_price_model", partition=week, config=op_config("models__price_model", params)
    )


def _current_model_run(week: str, params: dict) -> str | None:
    import dagster as dg

    from ml_platform.assets.price_model import TrainingConfig
    from ml_platform.definitions import defs
    from ml_platform.provenance.up_to_date import current_model_run

    # Defaults included: a model trained with them named or not is the same model. (The
    # parameters were checked by checked_hyperparameters; the demo passes none.)
    hyperparameters = TrainingConfig(**params).model_dump()
    with dg.DagsterInstance.get() as instance:
        return current_model_run(instance, defs, week, hyperparameters)


def parse_param(text: str) -> tuple[str, float | int]:
    """argparse type of --param: NAME=NUMBER (a clear usage error otherwise)."""
    return hyperparameter(text)


def run_predict(args: argparse.Namespace) -> int:
    last = args.to or args.date
    if last < args.date:
        raise UsageError(f"--to {last} is before --date {args.date}")
    check_calendar(args.date, last, ("--date", "--to"))
    # In chunks of the backfill policy's size, as `ml-platform backfill --select predict`:
    # a year of quotes holds one chunk's features in memory at a time, not the year's.
    return run_chunked_backfill(args.date, last, "predict", None, force=args.force)


def run_promote(args: argparse.Namespace) -> int:
    if args.model is not None:
        return _promote({"model_storage_id": args.model, "reason": args.reason})
    return promote_week(args.week.isoformat(), args.reason)


def promote_week(week: str, reason: str) -> int:
    """Promote the week's latest model; the promotion records its exact version."""
    return _promote({"week": week, "reason": reason})


def run_rollback(reason: str) -> int:
    """Make the model that was live before the live one live again, by exact version.

    The target is the most recent promotion of another model (materialization, run,
    sha256), not that week's latest model; the champion step decides it again under the
    promotion lock, from the same history.
    """
    import dagster as dg

    from ml_platform.provenance.champion import champion_history, rollback_target

    with dg.DagsterInstance.get() as instance:
        history = champion_history(instance)
    target, message = rollback_target(history)
    if target is None:
        print(message, file=sys.stderr)
        return 1
    print(message)
    expected = target["model_storage_id"]  # refused if another promotion changed it meanwhile
    return _promote(
        {"rollback": True, "model_storage_id": expected, "reason": f"rollback: {reason}"}
    )


def _promote(config: dict) -> int:
    config["promoted_by"] = f"manual ({os.environ.get('USER', 'cli')})"
    return run_job("promote_champion", config=op_config("models__champion", config))
