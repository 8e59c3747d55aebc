"""The `ml-platform` command: thin shells over Dagster and the demo generator.

Every command that computes something goes through Dagster materializations on the
instance in DAGSTER_HOME, so each run appears in the UI with the same lineage.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from datetime import date, timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SELECTIONS = {
    "data": "group:raw or group:clean or group:features",
    "raw": "group:raw",
}
# The job each selection runs as, so CLI runs show under a meaningful name in the UI.
JOBS = {"data": "data_pipeline", "raw": "ingest_shipments"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ml-platform", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("generate", help="write demo drops into the landing zone", add_help=False)
    commands.add_parser(
        "retention", help="remove stored versions no provenance needs", add_help=False
    )

    demo = commands.add_parser("demo", help="land demo drops and materialize the first days")
    demo.add_argument("--days", type=int, default=38)
    demo.add_argument("--rows-per-day", type=int, default=20_000)
    demo.add_argument("--materialize-days", type=int, default=35)

    backfill = commands.add_parser("backfill", help="backfill a partition range")
    backfill.add_argument("--from", dest="start", required=True, help="first day, YYYY-MM-DD")
    backfill.add_argument("--to", dest="end", required=True, help="last day, YYYY-MM-DD")
    backfill.add_argument("--select", choices=sorted(SELECTIONS), default="data")
    backfill.add_argument(
        "--submit",
        action="store_true",
        help="file an asset backfill for the daemon (dagster dev) instead of running it here",
    )

    train = commands.add_parser("train", help="train one week's price model")
    train.add_argument("--week", required=True, help="the week's Monday, YYYY-MM-DD")
    train.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a hyperparameter, e.g. learning_rate=0.05 (repeatable)",
    )

    promote = commands.add_parser("promote", help="make a trained model week live")
    promote.add_argument("--week", required=True)
    promote.add_argument("--reason", required=True)

    rollback = commands.add_parser("rollback", help="make the previous champion live again")
    rollback.add_argument("--reason", required=True)

    predict = commands.add_parser("predict", help="quote a day's shipments with the champion")
    predict.add_argument("--date", required=True, help="first day, YYYY-MM-DD")
    predict.add_argument("--to", help="last day (default: the same day)")

    _add_provenance_parsers(commands)

    dev = commands.add_parser("dev", help="start the Dagster UI and daemon (dagster dev)")
    dev.add_argument("--port", type=int, default=3000)

    args, rest = parser.parse_known_args(argv)
    if args.command == "generate":
        from ml_platform.demo.generator import main as generate_main

        return generate_main(_with_default_landing(rest))
    if args.command == "retention":
        _use_platform_dagster_home()
        from ml_platform.retention_job import retention_main

        return retention_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    _use_platform_dagster_home()
    if args.command == "demo":
        return _demo(args)
    if args.command == "backfill":
        return _backfill(args)
    if args.command == "dev":
        return _dev(args)
    if args.command == "train":
        params = dict(_parse_param(p) for p in args.param)
        return _run_job(
            "train_price_model",
            partition=args.week,
            config=_op_config("models__price_model", params),
        )
    if args.command == "promote":
        return _promote(args.week, args.reason)
    if args.command == "rollback":
        return _rollback(args.reason)
    if args.command == "predict":
        return _run_job("predict_prices", first=args.date, last=args.to or args.date)
    if args.command in PROVENANCE_COMMANDS:
        return _provenance(args)
    return 2


PROVENANCE_COMMANDS = ("lineage", "impact", "stale", "last-training", "champion", "explain")


def _add_provenance_parsers(commands) -> None:
    def with_format(parser):
        parser.add_argument("--format", choices=("text", "json"), default="text")
        return parser

    lineage = with_format(
        commands.add_parser("lineage", help="the exact chain a materialization was made from")
    )
    lineage.add_argument("asset", help="asset key, e.g. predictions/price_quotes")
    lineage.add_argument("--partition")
    lineage.add_argument("--storage-id", type=int, help="a specific materialization")
    lineage.add_argument("--shipment-id", help="one prediction row and its feature values")
    lineage.add_argument(
        "--no-verify", action="store_true", help="skip re-hashing the stored versions"
    )
    impact = with_format(
        commands.add_parser("impact", help="everything downstream that used a version or file")
    )
    impact.add_argument("asset", nargs="?")
    impact.add_argument("--partition")
    impact.add_argument("--file", help="a landed source file's URI")
    stale = with_format(commands.add_parser("stale", help="stale partitions and why"))
    stale.add_argument(
        "--backfill", action="store_true", help="file one backfill of exactly those partitions"
    )
    with_format(commands.add_parser("last-training", help="the last training run's results"))
    with_format(commands.add_parser("champion", help="the live model and since when"))
    explain = with_format(
        commands.add_parser("explain", help="which model and data made a day's predictions")
    )
    explain.add_argument("--date", required=True)


def _provenance(args: argparse.Namespace) -> int:
    """Read-only questions about the instance in DAGSTER_HOME (stale --backfill files one)."""
    from contextlib import ExitStack

    import dagster as dg

    from ml_platform.definitions import defs
    from ml_platform.provenance import commands as pc
    from ml_platform.provenance.verify import verifier_for

    graph = defs.resolve_asset_graph()
    with ExitStack() as stack:
        instance = stack.enter_context(dg.DagsterInstance.get())
        needs_storage = args.command == "explain" or (
            args.command == "lineage" and (not args.no_verify or args.shipment_id)
        )
        verifier = stack.enter_context(verifier_for(defs)) if needs_storage else None
        try:
            if args.command == "lineage":
                lineage = pc.backward(
                    instance,
                    dg.AssetKey.from_user_string(args.asset),
                    args.partition,
                    args.storage_id,
                    verifier=None if args.no_verify else verifier,
                )
                if args.shipment_id:
                    value = {
                        **pc.shipment_row(lineage, verifier, args.shipment_id),
                        "lineage": lineage.as_tree(),
                    }
                    text = pc.as_text({k: v for k, v in value.items() if k != "lineage"})
                    text += "\n" + pc.lineage_text(lineage)
                else:
                    value, text = lineage.as_tree(), pc.lineage_text(lineage)
            elif args.command == "impact":
                if bool(args.file) == bool(args.asset):
                    print(
                        "impact: give either ASSET [--partition P] or --file URI", file=sys.stderr
                    )
                    return 2
                value = pc.run_impact(instance, graph, args.asset, args.partition, args.file)
                text = pc.impact_text(value)
            elif args.command == "stale":
                value = pc.run_stale(instance, graph)
                text = pc.stale_text(value)
                if args.backfill:
                    backfill_id = pc.backfill_stale(instance, graph, value)
                    note = f"backfill {backfill_id} filed" if backfill_id else "no backfill needed"
                    text += f"\n{note}"
                    value = {"stale": value, "backfill_id": backfill_id}
            elif args.command == "last-training":
                value = pc.last_training(instance)
                text = pc.as_text(value)
            elif args.command == "champion":
                value = pc.champion_info(instance)
                text = (
                    f"live: price_model week {value['model_week']} (run {value['model_run_id']}) "
                    f"since {value['promoted_at']}, promoted by {value['promoted_by']}: "
                    f"{value['reason']}\nartifact {value['model_uri']} sha256 {value['model_sha256']}"
                )
            else:
                value = pc.explain(instance, args.date, verifier)
                text = pc.as_text(value)
        except LookupError as e:
            print(f"{args.command}: {e.args[0] if e.args else e}", file=sys.stderr)
            return 1
    print(pc.json.dumps(value, indent=2, default=str) if args.format == "json" else text)
    return 0


def _parse_param(text: str) -> tuple[str, float | int]:
    name, _, value = text.partition("=")
    if not value:
        raise SystemExit(f"--param {text!r}: expected NAME=VALUE")
    number = float(value)
    return name, int(number) if number.is_integer() and "." not in value else number


def _op_config(op: str, config: dict) -> dict:
    return {"ops": {op: {"config": config}}} if config else {}


def _promote(week: str, reason: str) -> int:
    config = {
        "week": week,
        "reason": reason,
        "promoted_by": f"manual ({os.environ.get('USER', 'cli')})",
    }
    return _run_job("promote_champion", config=_op_config("models__champion", config))


def _rollback(reason: str) -> int:
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
    return _promote(previous, f"rollback: {reason}")


def _with_default_landing(argv: list[str]) -> list[str]:
    if any(a.startswith("--landing-root") for a in argv) or any(
        a in ("-h", "--help") for a in argv
    ):
        return argv
    from ml_platform.settings import load_settings

    return ["--landing-root", str(load_settings().landing_root), *argv]


def _use_platform_dagster_home() -> None:
    """DAGSTER_HOME defaults to <ML_PLATFORM_HOME>/dagster, seeded with the repo's dagster.yaml."""
    from ml_platform.settings import load_settings

    if "DAGSTER_HOME" not in os.environ:
        os.environ["DAGSTER_HOME"] = str(load_settings().home / "dagster")
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    source = REPO_ROOT / "dagster.yaml"
    if source.is_file() and not (home / "dagster.yaml").exists():
        shutil.copyfile(source, home / "dagster.yaml")
    # Dagster's first-visit newsletter dialog would cover the UI for every analyst.
    (home / ".nux").mkdir(exist_ok=True)
    (home / ".nux" / "nux.yaml").write_text("seen: 1\n")


def _demo(args: argparse.Namespace) -> int:
    """Land demo drops, materialize the first days, and (with enough days) train, promote, predict.

    The drops after ``--materialize-days`` are left for the landing sensor to pick up once
    the platform runs, so a newcomer sees it work.
    """
    from ml_platform.demo.generator import GeneratorConfig, generate_drops
    from ml_platform.settings import load_settings

    settings = load_settings()
    start = settings.start_date
    t0 = time.perf_counter()
    generate_drops(
        settings.landing_root,
        start,
        args.days,
        GeneratorConfig(rows_per_day=args.rows_per_day, bad_row_share=0.01),
    )
    print(
        f"landed {args.days} daily drops in {settings.landing_root} ({time.perf_counter() - t0:.1f}s)"
    )
    if args.materialize_days <= 0:
        return 0
    end = start + timedelta(days=args.materialize_days - 1)
    if _run_range(start, end, "data"):
        return 1
    week = _last_trainable_week(start, end)
    if week is None:
        return 0
    config = {"ops": {"models__champion": {"config": {"reason": "demo: first model"}}}}
    return (
        _run_job("train_price_model", partition=week.isoformat())
        or _run_job("promote_champion", config=config)
        or _run_job(
            "predict_prices", first=(week + timedelta(days=7)).isoformat(), last=end.isoformat()
        )
    )


def _last_trainable_week(start: date, end: date) -> date | None:
    """The Monday of the last model week that ends before ``end`` with four weeks of features."""
    from ml_platform.partitions import TRAINING_WEEKS

    monday = end - timedelta(days=end.weekday() + 7)
    first_feature_day = monday - timedelta(weeks=TRAINING_WEEKS - 1)
    if first_feature_day < start or monday + timedelta(days=6) >= end:
        return None
    return monday


def _backfill(args: argparse.Namespace) -> int:
    start, end = date.fromisoformat(args.start), date.fromisoformat(args.end)
    if end < start:
        print(f"--to {end} is before --from {start}", file=sys.stderr)
        return 2
    if args.submit:
        return _submit_backfill(start, end, SELECTIONS[args.select])
    return _run_range(start, end, args.select)


def _run_range(start: date, end: date, selection: str) -> int:
    """One run over the range: what `dagster asset materialize --partition-range` does."""
    return _run_job(JOBS[selection], first=start.isoformat(), last=end.isoformat())


def _run_job(
    job_name: str,
    *,
    partition: str | None = None,
    first: str | None = None,
    last: str | None = None,
    config: dict | None = None,
) -> int:
    """Execute one of the code location's jobs as a run on the instance (it shows in the UI)."""
    import dagster as dg

    from ml_platform.definitions import defs

    job = defs.resolve_job_def(job_name)
    tags = (
        {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
        if first
        else {}
    )
    t0 = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance,
            partition_key=partition,
            tags=tags,
            run_config=config or {},
            raise_on_error=False,
        )
    scope = partition or (f"{first}..{last}" if first else "")
    status = "succeeded" if result.success else "FAILED"
    print(f"run {result.run_id} {status}: {job.name} {scope} in {time.perf_counter() - t0:.1f}s")
    if not result.success:
        for event in result.all_events:
            if event.is_step_failure:
                error = event.step_failure_data.error
                while error.cause is not None:
                    error = error.cause
                print(f"  {event.step_key}: {error.message.strip()}", file=sys.stderr)
    return 0 if result.success else 1


def _submit_backfill(start: date, end: date, selection: str) -> int:
    """File an asset backfill of exactly these days for every selected asset."""
    import dagster as dg

    from ml_platform.backfills import file_backfill
    from ml_platform.definitions import defs
    from ml_platform.partitions import daily_partitions

    graph = defs.resolve_asset_graph()
    keys = sorted(dg.AssetSelection.from_string(selection).resolve(graph))
    days = daily_partitions.get_partition_keys_in_range(
        dg.PartitionKeyRange(start.isoformat(), end.isoformat())
    )
    with dg.DagsterInstance.get() as instance:
        backfill_id = file_backfill(
            instance,
            graph,
            {key: days for key in keys},
            title=f"ml-platform backfill {start}..{end}",
        )
    print(f"backfill {backfill_id} filed: {len(days)} days of {selection}")
    return 0


def _dev(args: argparse.Namespace) -> int:
    """Replace this process with `dagster dev` on the repo's workspace."""
    from ml_platform.settings import load_settings

    # The UI's processes find the platform's folders by ML_PLATFORM_HOME, not by their cwd;
    # starting in DAGSTER_HOME keeps Dagster from warning about the repo's dagster.yaml.
    os.environ["ML_PLATFORM_HOME"] = str(load_settings().home)
    os.chdir(os.environ["DAGSTER_HOME"])
    dagster = shutil.which("dagster") or str(Path(sys.executable).with_name("dagster"))
    cmd = [
        dagster,
        "dev",
        "-w",
        str(REPO_ROOT / "workspace.yaml"),
        "-h",
        "127.0.0.1",
        "-p",
        str(args.port),
    ]
    print(f"DAGSTER_HOME={os.environ['DAGSTER_HOME']}\n{' '.join(cmd)}", flush=True)
    os.execv(cmd[0], cmd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
