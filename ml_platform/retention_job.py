"""The retention job and its CLI entry point (``ml-platform retention``)."""

import json
import sys

import dagster as dg

from ml_platform.storage.retention import (
    DEFAULT_PROTECTED_ASSETS,
    apply_retention,
    parse_age,
    unknown_assets,
)


class RetentionConfig(dg.Config):
    older_than: str = "30d"
    dry_run: bool = False
    protected_assets: list[str] = list(DEFAULT_PROTECTED_ASSETS)


@dg.op(
    required_resource_keys={"lake_io_manager"},
    out=dg.Out(dg.Nothing),
    description="Removes stored versions older than the age unless current or referenced.",
)
def remove_old_versions(context: dg.OpExecutionContext, config: RetentionConfig):
    report = run_retention(context.instance, context.resources.lake_io_manager, config)
    summary = report.as_dict()
    context.log.info(
        f"retention: removed {len(report.removed)} object(s), {report.removed_bytes} bytes; "
        f"kept {len(report.kept)} old object(s) still needed"
        + (" (dry run: nothing deleted)" if report.dry_run else "")
    )
    yield dg.Output(
        None,
        metadata={
            "removed": dg.MetadataValue.int(len(report.removed)),
            "removed_bytes": dg.MetadataValue.int(report.removed_bytes),
            "kept": dg.MetadataValue.int(len(report.kept)),
            "report": dg.MetadataValue.json(summary),
        },
    )


@dg.job(description="Removes old stored versions that no current version or provenance needs.")
def retention_job():
    remove_old_versions()


def run_retention(instance: dg.DagsterInstance, io_manager, config: RetentionConfig):
    unknown = unknown_assets(instance, config.protected_assets)
    if unknown:
        raise dg.Failure(f"protected_assets: {unknown_message(instance, unknown)}")
    return apply_retention(
        io_manager.store(),
        instance,
        parse_age(config.older_than),
        protected=[dg.AssetKey.from_user_string(k) for k in config.protected_assets],
        dry_run=config.dry_run,
    )


def unknown_message(instance: dg.DagsterInstance, unknown: list[str]) -> str:
    from ml_platform.cli.errors import did_you_mean

    known = sorted(key.to_user_string() for key in instance.get_asset_keys())
    parts = []
    for name in unknown:
        hint = did_you_mean(name, known).strip()
        parts.append(f"{name} ({hint})" if hint else name)
    return f"no asset {', '.join(parts)} on this instance; nothing was removed"


def retention_main(argv: list[str] | None = None) -> int:
    """``ml-platform retention --older-than 30d [--dry-run] [--protect ASSET ...]``."""
    from ml_platform.cli.errors import OneLineParser

    parser = OneLineParser(prog="ml-platform retention", description=__doc__)
    parser.add_argument("--older-than", default="30d", help="age, e.g. 30d, 12h (default 30d)")
    parser.add_argument("--dry-run", action="store_true", help="report, delete nothing")
    parser.add_argument(
        "--protect",
        action="append",
        default=[],
        metavar="ASSET",
        help="an asset whose current versions' provenance is also kept (repeatable; always "
        "kept: " + ", ".join(DEFAULT_PROTECTED_ASSETS) + ")",
    )
    parser.add_argument(
        "--format", choices=["text", "json"], default="text", help="json: the whole report"
    )
    args = parser.parse_args(argv)
    try:
        parse_age(args.older_than)
    except ValueError as e:
        parser.error(f"--older-than: {e}")
    from ml_platform.cli.progress import QUIET_LOGGERS
    from ml_platform.definitions import build_definitions

    protected = list(dict.fromkeys([*DEFAULT_PROTECTED_ASSETS, *args.protect]))
    config = RetentionConfig(
        older_than=args.older_than, dry_run=args.dry_run, protected_assets=protected
    )
    job = build_definitions().resolve_job_def("retention_job")
    # A recorded run in the instance (DAGSTER_HOME), like one launched from the UI.
    with dg.DagsterInstance.get() as instance:
        unknown = unknown_assets(instance, protected)
        if unknown:
            parser.error(f"--protect: {unknown_message(instance, unknown)}")
        result = job.execute_in_process(
            instance=instance,
            run_config={
                "ops": {"remove_old_versions": {"config": config.model_dump()}},
                "loggers": QUIET_LOGGERS,
            },
            raise_on_error=False,
        )
    if not result.success:
        print(
            f"ml-platform retention: run {result.run_id} failed; nothing more was removed "
            "(see the run in the UI)",
            file=sys.stderr,
        )
        return 1
    meta = next(
        e.event_specific_data.metadata
        for e in result.all_events
        if e.is_successful_output and e.step_key == "remove_old_versions"
    )
    report = meta["report"].value
    if args.format == "json":
        print(json.dumps(report, indent=2))
        return 0
    verb = "would remove" if report["dry_run"] else "removed"
    print(
        f"retention {result.run_id}: {verb} {len(report['removed'])} object(s), "
        f"{report['removed_bytes']:,} bytes, older than {report['cutoff']}; kept "
        f"{len(report['kept'])} old object(s) still needed, {report['younger_than_cutoff']} "
        f"younger{' (dry run: nothing deleted)' if report['dry_run'] else ''}"
    )
    return 0
