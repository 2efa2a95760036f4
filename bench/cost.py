"""Cost of non-compliance over a large FOCUS export: seconds and peak memory.

Run: ``.venv/bin/python -m bench.cost [--rows 1000000] [--json] [--format csv|parquet]``.

1. A FOCUS file of N rows is generated from the shared FOCUS 1.0 sample (1,000 real rows, see
   ../shared/data/SOURCES.md) into a temporary folder: the sample repeated N/1000 times, each copy
   with its own ResourceIds (a suffix that keeps the id's resource type), so the file holds about
   N * 0.92 distinct resources while the tags keep the sample's real mess. ``--unique-tags`` also
   gives every copy its own value of an extra tag key, which multiplies the distinct
   (type, Tags) combinations the policy must judge (a harder case than real exports).
2. ``services.cost.attribution_from_focus`` runs on it with the shipped default policy in a fresh
   child process, so the measured peak memory (the OS's high-water mark of resident memory, VmHWM) is
   the cost computation's own plus the interpreter, not the generator's. Seconds are the call's wall
   time, best of ``--repeats``.

Target (issue 3): under 10 s and under 1 GiB for 1,000,000 rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT.parent / "shared" / "data" / "focus" / "focus_sample_1.0.csv"
TARGET_SECONDS = 10.0
TARGET_RSS_MB = 1024.0


def generate(target: Path, rows: int, *, sample: Path = SAMPLE, unique_tags: bool = False,
             file_format: str = "csv") -> int:
    """Write a FOCUS file of ``rows`` rows built from ``sample``; returns the row count written."""
    import duckdb

    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    con.execute("SET enable_progress_bar = false")
    try:
        base = int(con.execute("SELECT count(*) FROM read_csv(?, all_varchar = true)", [str(sample)]).fetchone()[0])
        copies = -(-rows // base)
        # The suffix keeps bare ids matching their pattern (i-0abc -> i-0abcx000017) and ARNs their type.
        tags = ("CASE WHEN Tags IS NULL OR Tags = '{}' THEN Tags "
                "ELSE '{\"BenchCopy\": \"c' || k || '\", ' || ltrim(Tags, '{') END" if unique_tags else "Tags")
        select = f"""
            SELECT * EXCLUDE (k) REPLACE (
                CASE WHEN ResourceId IS NULL THEN NULL ELSE ResourceId || 'x' || lpad(k::VARCHAR, 6, '0') END
                    AS ResourceId,
                {tags} AS Tags)
            FROM read_csv('{_sql_text(sample)}', all_varchar = true, nullstr = 'NULL')
            CROSS JOIN range({copies}) AS t(k)
            LIMIT {rows}"""
        options = "FORMAT parquet" if file_format == "parquet" else "HEADER, DELIMITER ','"
        con.execute(f"COPY ({select}) TO '{_sql_text(target)}' ({options})")
        return min(rows, base * copies)
    finally:
        con.close()


def _sql_text(path: Path) -> str:
    return str(path).replace("'", "''")


def measure(path: Path, repeats: int) -> dict[str, Any]:
    """In this process: run the attribution ``repeats`` times; the best time and this process' peak RSS."""
    from services.cost import attribution_from_focus

    best = float("inf")
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = attribution_from_focus(path)
        best = min(best, time.perf_counter() - start)
    assert result is not None
    return {
        "seconds": round(best, 3),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "rows": result.rows.total,
        "total_cost": result.total_cost,
        "attribution_gap": result.attribution_gap,
        "attribution_gap_percentage": result.attribution_gap_percentage,
    }


def _peak_rss_mb() -> float:
    """This process' peak RSS. Linux's VmHWM belongs to this program only; ru_maxrss survives exec, so in a
    child it would report the parent's peak (the generator's) when that was higher."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(rows: int, *, repeats: int = 3, unique_tags: bool = False, file_format: str = "csv") -> dict[str, Any]:
    """Generate the file, measure in a child process, and return the measurements."""
    if not SAMPLE.is_file():
        raise SystemExit(f"the FOCUS sample is missing: {SAMPLE} (see ../shared/data/SOURCES.md)")
    with tempfile.TemporaryDirectory(prefix="bench-cost-") as tmp:
        path = Path(tmp) / f"focus_{rows}.{'parquet' if file_format == 'parquet' else 'csv'}"
        start = time.perf_counter()
        written = generate(path, rows, unique_tags=unique_tags, file_format=file_format)
        generate_s = time.perf_counter() - start
        proc = subprocess.run([sys.executable, "-m", "bench.cost", "--measure", str(path), "--repeats", str(repeats)],
                              cwd=ROOT, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"the measuring process failed:\n{proc.stderr}")
        m = json.loads(proc.stdout.strip().splitlines()[-1])
        distinct = _distinct_combinations(path)
        size_mb = path.stat().st_size / 2**20
    assert m["rows"] == written, (m["rows"], written)
    return {
        "benchmark": "services.cost.attribution_from_focus",
        "rows": written,
        "format": file_format,
        "file_mb": round(size_mb, 1),
        "distinct_tag_combinations": distinct,
        "unique_tags": unique_tags,
        "generate_seconds": round(generate_s, 2),
        "seconds": m["seconds"],
        "rows_per_second": round(written / m["seconds"]),
        "peak_rss_mb": m["peak_rss_mb"],
        "target_met": m["seconds"] < TARGET_SECONDS and m["peak_rss_mb"] < TARGET_RSS_MB,
        "total_cost": m["total_cost"],
        "attribution_gap": m["attribution_gap"],
        "attribution_gap_percentage": m["attribution_gap_percentage"],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def _distinct_combinations(path: Path) -> int:
    import duckdb

    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    con.execute("SET enable_progress_bar = false")
    try:
        reader = ("read_parquet" if path.suffix == ".parquet" else "read_csv")
        sql = f"SELECT count(*) FROM (SELECT DISTINCT Tags FROM {reader}('{_sql_text(path)}'))"
        return int(con.execute(sql).fetchone()[0])
    finally:
        con.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the generated FOCUS file")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (the best counts)")
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv", help="file format generated")
    parser.add_argument("--unique-tags", action="store_true", help="give each copy its own extra tag value")
    parser.add_argument("--json", action="store_true", help="also print one JSON line with the results")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure is not None:
        print(json.dumps(measure(args.measure, args.repeats)))
        return 0
    m = run(args.rows, repeats=args.repeats, unique_tags=args.unique_tags, file_format=args.format)
    verdict = "meets" if m["target_met"] else "MISSES"
    print(f"cost attribution: {m['rows']:,} FOCUS rows ({m['format']}, {m['file_mb']} MB, "
          f"{m['distinct_tag_combinations']:,} distinct Tags) in {m['seconds']:.2f} s = "
          f"{m['rows_per_second']:,} rows/s, "
          f"peak RSS {m['peak_rss_mb']:.0f} MB ({verdict} the target: < {TARGET_SECONDS:.0f} s, "
          f"< {TARGET_RSS_MB:.0f} MB); gap {m['attribution_gap_percentage']}% of taggable spend")
    if args.json:
        print(json.dumps(m, sort_keys=True))
    return 0 if m["target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
