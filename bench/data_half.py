"""Benchmark: the data half (raw -> clean -> features) three ways, on the same landed data.

    .venv/bin/python bench/data_half.py [--days 30 90] [--rows-per-day 200000] [--rounds 2]

1. floor (bench/floor.py): the fastest plain script for the same work that we could write
   (lazy polars, days in parallel threads, no Dagster, no pandera, no provenance): parse the drops, write
   raw, typed + validated + deduplicated clean and the rejects with their reasons, and the
   28-day lane features, one zstd Parquet file per day and table. Every run checks that the
   floor and each platform variant wrote the same tables: days, rows, columns and the rows
   rejected for each reason;
2. chunked: `ml-platform backfill --from --to`, the CLI's chunked path (chunks of the
   backfill policy's size, the run queue limit of them at a time, in worker processes);
3. per_day: one Dagster run per day, one after the other, in one process;
4. chunked_pg (only when asked for with --variants): the chunked backfill with Dagster's
   instance on PostgreSQL, as in production (deploy/local-postgres/dagster.yaml, a
   throwaway server the script starts, a fresh database per measurement), to show what the
   local SQLite instance's event writes cost.

Each variant runs as its own process tree on a fresh SQLite instance. Reported: wall
seconds, rows/s, peak memory summed over the tree's processes while they run (RSS, and PSS,
which counts pages the worker processes share with their fork server once), and average
cores used (CPU seconds of every process in the tree / wall seconds). Variants are
interleaved over --rounds and the best round of each is shown, since other work on the
machine makes single runs noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path

START = date(2025, 1, 1)  # far enough back that 365 daily partitions exist today
VARIANTS = ("floor", "chunked", "per_day", "chunked_pg")
REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, nargs="+", default=[30, 90])
    parser.add_argument("--rows-per-day", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS[:3]))
    parser.add_argument("--variant", choices=["floor", "per_day"])  # internal
    parser.add_argument("--workdir")
    args = parser.parse_args()
    if args.variant:
        return _run_inner(args)
    with contextlib.ExitStack() as stack:
        server = None  # the throwaway PostgreSQL server of the chunked_pg variant
        if "chunked_pg" in args.variants:
            from ml_platform.devtools.postgres_server import postgres_server

            server = stack.enter_context(postgres_server())
        table = _run_all(args, server)
    _report(table, args.rows_per_day)
    return 0


def _run_all(args, server) -> list:
    table = []
    for days in args.days:
        with tempfile.TemporaryDirectory(prefix="ml_platform_bench_") as tmp:
            landing = Path(tmp) / "landing"
            _land(landing, days, args.rows_per_day)
            best: dict[str, dict] = {}
            outputs: dict[str, dict] = {}  # variant -> its tables, to check they agree
            for round_ in range(args.rounds):
                for variant in args.variants:
                    workdir = Path(tmp) / f"{variant}-{round_}"
                    workdir.mkdir()
                    (workdir / "landing").symlink_to(landing)
                    result = _measure(variant, workdir, days, args.rows_per_day, server)
                    print(f"  {days} days, round {round_ + 1}, {variant}: {_fmt(result)}")
                    outputs[variant] = _outputs(workdir, variant)
                    if variant != "floor" and "floor" in outputs:
                        _same_outputs(outputs["floor"], outputs[variant], variant)
                    if variant not in best or result["seconds"] < best[variant]["seconds"]:
                        best[variant] = result
                    subprocess.run(["rm", "-rf", str(workdir)], check=True)
            table.append((days, best))
    return table


# Where each variant leaves each table: the floor one file per day, the platform one object
# per partition and write (the latest is current: each variant writes every day once).
TABLES = {
    "raw": "raw/shipments",
    "clean": "clean/shipments",
    "rejected": "clean/shipments_rejected",
    "features": "features/shipment_features",
}


def _outputs(workdir: Path, variant: str) -> dict[tuple[str, str], tuple]:
    """(table, day) -> (rows, sorted column names, reject reasons) of what the variant wrote."""
    import polars as pl

    found = {}
    for table, asset in TABLES.items():
        if variant == "floor":
            files = {p.stem: p for p in (workdir / "floor_out" / table).glob("*.parquet")}
        else:
            files = {
                d.name: max(d.glob("*.parquet"), key=lambda p: p.stat().st_mtime)
                for d in (workdir / "storage" / asset).iterdir()
            }
        for day, path in files.items():
            rows = pl.scan_parquet(path).select(pl.len()).collect().item()
            reasons = None
            if table == "rejected":  # how many rows for each reason
                counts = pl.scan_parquet(path).group_by("reason").len().collect()
                reasons = sorted(counts.iter_rows())
            found[table, day] = (rows, sorted(pl.read_parquet_schema(path)), reasons)
    return found


def _same_outputs(floor: dict, other: dict, variant: str) -> None:
    """The floor does the platform's work: same tables, days, rows, columns and reject
    reasons, or stop."""
    differ = [
        f"{table} {day}: floor {floor.get((table, day))}, {variant} {other.get((table, day))}"
        for table, day in sorted(set(floor) | set(other))
        if floor.get((table, day)) != other.get((table, day))
    ]
    if differ:
        raise SystemExit(
            f"the floor and {variant} wrote different tables:\n" + "\n".join(differ[:10])
        )


def _land(landing: Path, days: int, rows_per_day: int) -> None:
    from ml_platform.demo.generator import GeneratorConfig, generate_drops

    t0 = time.perf_counter()
    config = GeneratorConfig(rows_per_day=rows_per_day, bad_row_share=0.01)
    generate_drops(landing, START, days, config)
    print(f"landed {days} days x {rows_per_day:,} rows in {time.perf_counter() - t0:.1f}s")


def _env(workdir: Path, rows_per_day: int) -> dict:
    return {
        **os.environ,
        "ML_PLATFORM_HOME": str(workdir),
        "ML_PLATFORM_START_DATE": START.isoformat(),
        "ML_PLATFORM_ROWS_PER_DAY": str(rows_per_day),
        "DAGSTER_HOME": str(workdir / "dagster"),
    }


def _measure(variant: str, workdir: Path, days: int, rows_per_day: int, server=None) -> dict:
    last = (START + timedelta(days=days - 1)).isoformat()
    (workdir / "dagster").mkdir()
    env = _env(workdir, rows_per_day)
    if variant == "chunked_pg":
        database = server.create_database(f"bench_{days}d_{workdir.name.replace('-', '_')}")
        env.update(database.env("DAGSTER_PG_"))
        yaml = REPO / "deploy" / "local-postgres" / "dagster.yaml"
        (workdir / "dagster" / "dagster.yaml").write_text(yaml.read_text())
    if variant.startswith("chunked"):
        command = [str(REPO / ".venv/bin/ml-platform"), "backfill"]
        command += ["--from", START.isoformat(), "--to", last]
    else:
        command = [sys.executable, __file__, "--variant", variant, "--workdir", str(workdir)]
        command += ["--days", str(days), "--rows-per-day", str(rows_per_day)]
    result = measure_command(command, env, variant)
    return {**result, "rows": days * rows_per_day}


def measure_command(command: list[str], env: dict, label: str) -> dict:
    """Run ``command`` as its own process tree: wall seconds (imports included), peak RSS and
    PSS summed over the tree, average cores used, and its output. Exits naming ``label`` if
    it fails."""
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
    )
    sampler = TreeSampler(process.pid)
    sampler.start()
    out, err = process.communicate()
    sampler.stop()
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode:
        raise SystemExit(f"{label} failed ({process.returncode}):\n{out[-3000:]}\n{err[-3000:]}")
    reaped = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "seconds": seconds,
        "peak_rss_mb": sampler.peak_rss / 2**20,
        "peak_pss_mb": sampler.peak_pss / 2**20,
        "cores": max(reaped, sampler.cpu_seconds()) / seconds,
        "stdout": out,
    }


class TreeSampler:
    """Samples a process and all its descendants from /proc: summed RSS and PSS, CPU time.

    RSS and CPU every ``interval``, PSS every fifth: the sampler shares the machine it
    measures (0.19 cores when it read PSS every 0.1 s, 0.07 now).
    """

    def __init__(self, root: int, interval: float = 0.1) -> None:
        self.root, self.interval = root, interval
        self.peak_rss = self.peak_pss = 0
        self._cpu: dict[int, float] = {}  # pid -> last seen utime + stime (seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._tick = os.sysconf("SC_CLK_TCK")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def cpu_seconds(self) -> float:
        return sum(self._cpu.values())

    def _run(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        tick = 0
        while not self._stop.is_set():
            # PSS (smaps_rollup walks every page of a process) every fifth sample only: at
            # every sample the sampler itself took a fifth of a core from the 2 it measures.
            with_pss = tick % 5 == 0
            rss = pss = 0
            for pid in self._tree():
                try:
                    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    self._cpu[pid] = (int(stat[11]) + int(stat[12])) / self._tick
                    rss += int(stat[21]) * page
                    pss += _pss(pid) if with_pss else 0
                except (OSError, IndexError, ValueError):
                    continue
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            tick += 1
            self._stop.wait(self.interval)

    def _tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    stat = Path(f"/proc/{entry.name}/stat").read_text()
                    ppid = int(stat.rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(entry.name))
        found, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found


def _pss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


def _fmt(r: dict) -> str:
    return (
        f"{r['seconds']:.1f}s, {r['rows'] / r['seconds']:,.0f} rows/s, peak RSS "
        f"{r['peak_rss_mb']:,.0f} MB (PSS {r['peak_pss_mb']:,.0f} MB), {r['cores']:.2f} cores"
    )


def _report(table: list, rows_per_day: int) -> None:
    print(f"\ndata half at {rows_per_day:,} rows/day (best of the rounds)")
    head = f"{'days':>5} {'variant':<9}{'seconds':>9}{'rows/s':>11}{'RSS MB':>9}{'PSS MB':>9}"
    print(head + f"{'cores':>7}{'vs floor':>10}")
    for days, best in table:
        floor = best.get("floor", {}).get("seconds")
        for name, r in best.items():
            ratio = f"{r['seconds'] / floor:>9.2f}x" if floor else ""
            print(
                f"{days:>5} {name:<9}{r['seconds']:>9.1f}{r['rows'] / r['seconds']:>11,.0f}"
                f"{r['peak_rss_mb']:>9,.0f}{r['peak_pss_mb']:>9,.0f}{r['cores']:>7.2f}{ratio}"
            )
    print("goals: chunked within 1.3x of the floor, >= 1.7 cores, peak <= 2,500 MB at any length")


# -- the variants that run in this file's own process -------------------------------------


def _run_inner(args) -> int:
    workdir = Path(args.workdir)
    t0 = time.perf_counter()
    if args.variant == "floor":
        from floor import floor  # bench/floor.py: this directory is the script's path

        floor(workdir / "landing" / "shipments", workdir / "floor_out", START, args.days[0])
    else:
        import dagster as dg

        from ml_platform.definitions import defs

        job = defs.resolve_job_def("data_pipeline")
        quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
        with dg.DagsterInstance.get() as instance:
            for i in range(args.days[0]):
                day = (START + timedelta(days=i)).isoformat()
                result = job.execute_in_process(
                    instance=instance, partition_key=day, run_config=quiet
                )
                assert result.success, day
                # A run's objects form reference cycles that hold its frames until the
                # cyclic collector runs, which counts objects, not bytes: without this,
                # memory climbs to 3.6 GB over 28 runs. The daemon runs each in a process.
                del result
                gc.collect()
    print(json.dumps({"seconds": time.perf_counter() - t0}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
