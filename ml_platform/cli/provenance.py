"""Provenance questions: lineage, impact, stale, last-training, champion, explain."""

from __future__ import annotations

import argparse
import sys

from ml_platform.cli.errors import UsageError, did_you_mean, iso_date

PROVENANCE_COMMANDS = ("lineage", "impact", "stale", "last-training", "champion", "explain")


def add_parsers(commands) -> None:
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
    explain.add_argument("--date", type=iso_date, required=True, help="YYYY-MM-DD")
    for name in PROVENANCE_COMMANDS:
        commands.choices[name].set_defaults(handler=run_provenance)


def _known_asset(graph, name: str) -> None:
    """An asset the definitions do not have is a usage error, not "no materialization"."""
    import dagster as dg

    if graph.has(dg.AssetKey.from_user_string(name)):
        return
    known = sorted(node.key.to_user_string() for node in graph.asset_nodes)
    raise UsageError(f"no asset {name}; {did_you_mean(name, known)}the assets: {', '.join(known)}")


def run_provenance(args: argparse.Namespace) -> int:
    """Read-only questions about the instance in DAGSTER_HOME (stale --backfill files one)."""
    from contextlib import ExitStack

    import dagster as dg

    from ml_platform.definitions import defs
    from ml_platform.provenance import commands as pc
    from ml_platform.provenance.verify import verifier_for

    graph = defs.resolve_asset_graph()
    if getattr(args, "asset", None):
        _known_asset(graph, args.asset)
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
                        "ml-platform impact: give either ASSET [--partition P] or --file URI",
                        file=sys.stderr,
                    )
                    return 2
                value = pc.run_impact(instance, graph, args.asset, args.partition, args.file)
                text = pc.impact_text(value)
            elif args.command == "stale":
                value = pc.run_stale(instance, graph, defs)
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
                value = pc.explain(instance, args.date.isoformat(), verifier)
                text = pc.as_text(value)
        except LookupError as e:
            print(f"ml-platform {args.command}: {e.args[0] if e.args else e}", file=sys.stderr)
            return 1
    print(pc.json.dumps(value, indent=2, default=str) if args.format == "json" else text)
    return 0
