"""Which stored version of each partition a SQL view holds, and reading them verified.

Two catalogs, both lists of materializations (lineage ``Node``s) per asset:

- current: every partition's latest materialization, the version the platform's own readers
  load (``ml_platform.storage.current``);
- as of one materialization: exactly the versions its provenance names, transitively
  (``ml_platform.provenance.lineage.backward``), whatever was re-dropped, retrained or
  backfilled since.

DuckDB never touches the storage itself (no extension is downloaded, none is needed):
object-store versions are fetched through the asset's own IO manager store (local folder or
the GCS client) to local files, checked against the sha256 recorded when they were written,
and only then read by DuckDB; Postgres tables are streamed through the platform's reader
(one REPEATABLE READ snapshot, ADBC) and their bookkeeping must name the very run the
catalog names. Neither holds a view's rows in Python memory. A version that is gone,
changed or replaced is an error naming it: nothing different is queried in its place.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pyarrow as pa

from ml_platform.provenance.lineage import Node, backward, node_from_record
from ml_platform.storage.current import latest_storage_ids, records_by_storage_id

# The schema of the catalog's own table (one row per stored version a view holds).
CATALOG_SCHEMA = "ml_platform"
VERSIONS_TABLE = "versions"
_DOWNLOAD_WORKERS = 8


class UnavailableVersionError(Exception):
    """Stored versions the catalog names cannot be read exactly as recorded."""

    def __init__(self, what: str, problems: list[str]) -> None:
        self.problems = problems
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(
            f"{what}: {len(problems)} stored version(s) cannot be read as recorded, "
            f"nothing was queried: {shown}{more}"
        )


@dataclass(frozen=True)
class View:
    """One asset as a DuckDB table: ``<key prefix>.<rest of the key joined by '__'>``."""

    asset: str
    schema: str
    table: str

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def qualified(self) -> str:
        return f"{quote_ident(self.schema)}.{quote_ident(self.table)}"

    @classmethod
    def of(cls, asset: str) -> View:
        path = dg.AssetKey.from_user_string(asset).path
        if len(path) == 1:
            return cls(asset, "main", path[0])
        return cls(asset, path[0], "__".join(path[1:]))


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class Catalog:
    """The stored versions each view holds, and the IO manager each asset is stored with."""

    description: str
    nodes: dict[str, list[Node]]
    managers: dict[str, Any]
    as_of: Node | None = None
    skipped: dict[str, str] = field(default_factory=dict)

    def kind(self, node: Node) -> str:
        """'table' (Postgres rows), 'parquet' (an object) or 'artifact' (a model, no view)."""
        manager = self.managers[node.asset]
        if hasattr(manager, "tables"):
            return "table"
        return "parquet" if (node.object_key or "").endswith(".parquet") else "artifact"

    def views(self) -> dict[str, View]:
        """View name -> view, for every asset whose versions hold rows."""
        result = {}
        for asset, nodes in sorted(self.nodes.items()):
            if nodes and all(self.kind(n) != "artifact" for n in nodes):
                view = View.of(asset)
                result[view.name] = view
        return result

    def versions_frame(self) -> pl.DataFrame:
        rows = [
            {
                "view": View.of(n.asset).name if self.kind(n) != "artifact" else None,
                "asset": n.asset,
                "partition": n.partition,
                "kind": self.kind(n),
                "storage_id": n.storage_id,
                "run_id": n.run_id,
                "uri": n.uri,
                "sha256": n.sha256,
                "rows": n.rows,
                "content_hash": n.content_hash,
            }
            for nodes in self.nodes.values()
            for n in nodes
        ]
        schema = {
            "view": pl.String,
            "asset": pl.String,
            "partition": pl.String,
            "kind": pl.String,
            "storage_id": pl.Int64,
            "run_id": pl.String,
            "uri": pl.String,
            "sha256": pl.String,
            "rows": pl.Int64,
            "content_hash": pl.String,
        }
        return pl.DataFrame(rows, schema=schema)


@contextmanager
def storage_managers(defs: dg.Definitions) -> Iterator[dict[str, Any]]:
    """Asset (user string) -> its initialized IO manager, as the definitions configure it."""
    from ml_platform.provenance.verify import verifier_for

    with verifier_for(defs) as verifier:
        yield verifier.io_managers


def _sorted(nodes: list[Node]) -> list[Node]:
    return sorted(nodes, key=lambda n: (n.partition or "", n.storage_id or 0))


def current_catalog(instance: dg.DagsterInstance, graph, managers: dict[str, Any]) -> Catalog:
    """Every materialized asset's partitions at their latest materialization."""
    nodes: dict[str, list[Node]] = {}
    for asset in sorted(managers):
        key = dg.AssetKey.from_user_string(asset)
        if graph.has(key) and graph.get(key).is_partitioned:
            ids = latest_storage_ids(instance, key)
            records = records_by_storage_id(instance, key, list(ids.values()))
        else:
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key), limit=1
            ).records
        if records:
            nodes[asset] = _sorted([node_from_record(r) for r in records])
    return Catalog("current versions", nodes, managers)


def as_of_catalog(
    instance: dg.DagsterInstance,
    managers: dict[str, Any],
    asset: str,
    partition: str | None = None,
    storage_id: int | None = None,
) -> Catalog:
    """Exactly the versions one materialization's provenance names, down to raw.

    Raises ``LineageError`` (a LookupError) when there is no such materialization.
    """
    lineage = backward(
        instance,
        dg.AssetKey.from_user_string(asset),
        partition,
        storage_id,
        with_checks=False,
    )
    root = lineage.node(lineage.root)
    where = f"{root.asset}" + (f" {root.partition}" if root.partition else "")
    description = f"as of {where} (materialization #{root.storage_id}, run {root.run_id})"
    unknown = sorted({n.asset for n in lineage.nodes.values() if n.asset not in managers})
    if unknown:
        raise UnavailableVersionError(
            description, [f"{a}: no IO manager of this deployment stores it" for a in unknown]
        )
    catalog = Catalog(description, {}, managers, as_of=root)
    problems = []
    by_asset: dict[str, list[Node]] = defaultdict(list)
    for node in _data_path(lineage, catalog):
        by_asset[node.asset].append(node)
        for entry in node.inputs:
            for read in entry.get("unresolved", []):
                problems.append(
                    f"{node.ref} (#{node.storage_id}) read {entry['asset']} partition "
                    f"{read.get('partition')} without recording which materialization it was"
                )
    for nodes in by_asset.values():
        seen: dict[str | None, Node] = {}
        for node in nodes:
            other = seen.setdefault(node.partition, node)
            if other is not node:
                problems.append(
                    f"{node.ref} was read in two versions (#{other.storage_id} run "
                    f"{other.run_id[:8]} and #{node.storage_id} run {node.run_id[:8]}); "
                    "ask as of the materialization that read the one you mean"
                )
    if problems:
        raise UnavailableVersionError(description, problems)
    catalog.nodes = {a: _sorted(ns) for a, ns in by_asset.items()}
    return catalog


def _data_path(lineage, catalog: Catalog) -> list[Node]:
    """The root and what it was made from, not crossing model artifacts.

    A model's own training data is not what a prediction was made from row by row; it is
    queried as of the model (``--as-of models/price_model --partition W``). The artifact
    itself is listed in ``ml_platform.versions``.
    """
    found: dict[int, Node] = {}
    stack = [lineage.root]
    while stack:
        storage_id = stack.pop()
        if storage_id in found:
            continue
        node = found[storage_id] = lineage.node(storage_id)
        if catalog.kind(node) == "artifact" and storage_id != lineage.root:
            continue
        stack.extend(i for e in node.inputs for i in e["storage_ids"] if i in lineage.nodes)
    return list(found.values())


# -- availability --------------------------------------------------------------------------
def check_available(catalog: Catalog) -> None:
    """Every version the views hold still exists as recorded (cheap: listings, bookkeeping).

    Run before loading anything, over all views, so a query touching only some of them still
    refuses a catalog that names a version that is gone or replaced.
    """
    problems: list[str] = []
    for view in catalog.views().values():
        nodes = catalog.nodes[view.asset]
        manager = catalog.managers[view.asset]
        if catalog.kind(nodes[0]) == "table":
            problems += _table_problems(manager, view, nodes)
        else:
            prefix = "/".join(dg.AssetKey.from_user_string(view.asset).path) + "/"
            present = {o.key for o in manager.store().list_objects(prefix)}
            problems += [_gone(n) for n in nodes if n.object_key not in present]
    if problems:
        raise UnavailableVersionError(catalog.description, problems)


def _gone(node: Node) -> str:
    return (
        f"{node.ref}: its stored version {node.uri} (materialization #{node.storage_id}, "
        f"run {node.run_id}) no longer exists (removed by retention?)"
    )


def _table_problems(manager, view: View, nodes: list[Node]) -> list[str]:
    from ml_platform.storage.postgres_tables import MissingPartitionError

    schema, table = manager.table_for(dg.AssetKey.from_user_string(view.asset))
    tables = manager.tables()
    partitions = [n.partition for n in nodes]
    try:
        current = {v.partition: v for v in tables.versions(schema, table, partitions)}
    except MissingPartitionError:
        current = {}
        for p in partitions:
            try:
                current[p] = tables.versions(schema, table, [p])[0]
            except MissingPartitionError:
                pass
    return [p for n in nodes if (p := _row_problem(n, current.get(n.partition)))]


def _row_problem(node: Node, version) -> str | None:
    where = f"{node.ref}: the rows of run {node.run_id} (materialization #{node.storage_id})"
    if version is None:
        return f"{where} are gone from the table"
    if version.run_id != node.run_id:
        return (
            f"{where} were replaced by run {version.run_id} at {version.written_at} "
            "(Postgres keeps only a partition's current rows)"
        )
    if node.content_hash and version.content_hash != node.content_hash:
        return f"{where} have changed: content hash {version.content_hash}, recorded {node.content_hash}"
    return None


# -- loading -------------------------------------------------------------------------------
def spool_objects(catalog: Catalog, view: View, into: Path) -> list[Path]:
    """Verified local files of the objects a view holds, in partition order.

    Each object is copied straight to a file in ``into``, hashed on the way, and checked
    against the sha256 recorded when it was written, so memory holds no object
    whatever the number of partitions. Anything gone or changed raises
    ``UnavailableVersionError`` naming every such version (and no file is left behind).
    """
    nodes = catalog.nodes[view.asset]
    store = catalog.managers[view.asset].store()
    into.mkdir(parents=True, exist_ok=True)

    def fetch(numbered: tuple[int, Node]) -> tuple[Path, str | None]:
        number, node = numbered
        dest = into / f"{number:06d}.parquet"
        return dest, _object_problem(node, store.copy_to(node.object_key, dest))

    with ThreadPoolExecutor(max_workers=min(_DOWNLOAD_WORKERS, len(nodes))) as pool:
        fetched = list(pool.map(fetch, enumerate(nodes)))
    problems = [problem for _, problem in fetched if problem]
    if problems:
        for path, _ in fetched:
            path.unlink(missing_ok=True)
        raise UnavailableVersionError(catalog.description, problems)
    return [path for path, _ in fetched]


def _object_problem(node: Node, sha256: str | None) -> str | None:
    if sha256 is None:
        return _gone(node)
    if node.sha256 and sha256 != node.sha256:
        return (
            f"{node.ref}: its stored version {node.uri} (materialization "
            f"#{node.storage_id}) has changed: sha256 differs from the recorded one"
        )
    return None


@contextmanager
def table_batches(catalog: Catalog, view: View) -> Iterator[pa.RecordBatchReader]:
    """The rows of the Postgres versions a view holds, streamed from one snapshot whose
    bookkeeping names the very runs the catalog names (else ``UnavailableVersionError``)."""
    from ml_platform.storage.postgres_tables import MissingPartitionError

    nodes = catalog.nodes[view.asset]
    manager = catalog.managers[view.asset]
    schema, table = manager.table_for(dg.AssetKey.from_user_string(view.asset))
    partitions = [n.partition for n in nodes]
    try:
        with manager.tables().read_batches(schema, table, partitions) as (batches, versions):
            problems = [
                p for n, v in zip(nodes, versions, strict=True) if (p := _row_problem(n, v))
            ]
            if problems:
                raise UnavailableVersionError(catalog.description, problems)
            yield batches
    except MissingPartitionError as e:
        raise UnavailableVersionError(catalog.description, [f"{view.asset}: {e}"]) from None


def check_rows(catalog: Catalog, view: View, rows: int) -> None:
    """The rows loaded for a view are as many as its materializations recorded."""
    recorded = [n.rows for n in catalog.nodes[view.asset]]
    if None not in recorded and sum(recorded) != rows:
        raise UnavailableVersionError(
            catalog.description,
            [f"{view.asset}: {rows} rows read, but its materializations recorded {sum(recorded)}"],
        )
