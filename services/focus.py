"""FOCUS cost exports read with DuckDB: locate (local path or ``s3://``), validate, stage, aggregate.

This module is the file reader; what the figures mean (untaggable, attributable, gap) is decided in
:mod:`services.cost`, which drives it. A FOCUS export is one file or a folder of parts (AWS CUR 2.0
FOCUS, Azure and GCP FOCUS exports), as CSV, gzip'd CSV or Parquet; the format is told by each file's
first bytes, not its name. DuckDB does all row-level work: Python only ever sees distinct
combinations and aggregates, so a file of millions of rows costs Python a few thousand objects.

Nothing is fetched at run time beyond the export itself: DuckDB's extension auto-install is off (its
``httpfs`` would download a binary), and ``s3://`` objects are downloaded with boto3 (which honours
``AWS_ENDPOINT_URL``) into a temporary folder that is removed on :meth:`FocusTable.close`.

Costs are read as ``DECIMAL(38, 15)``, so sums are exact and do not depend on the order DuckDB's
threads add rows in (a part of a FOCUS total always equals the sum of its parts).

How a row's resource type is known (see :func:`resource_type_of`): an AWS ARN gives
``service:resource`` exactly as :func:`scanner.providers.aws.arn.parse_arn` reads it; a bare EC2 id
(``i-``, ``vol-``, ``snap-``, ``eipalloc-``, ``nat-``; CUR reports EC2 usage under these) gives the
matching ``ec2:*`` type; anything else (Azure and GCP ids, OCIDs, other bare ids) has no known type
(``""``), so only policy rules with an empty ``applies_to`` apply to it. FOCUS's own ResourceType
column is a display name ("Virtual machine", "bucket"), not a ``service:resource`` type, and is not
used.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import duckdb

from scanner.providers.aws.arn import parse_arn
from services.errors import InvalidInput, Unavailable

__all__ = [
    "COST_METRICS",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "FocusSource",
    "FocusTable",
    "RowFilter",
    "StageSummary",
    "open_focus",
    "resource_type_of",
]

#: The FOCUS cost columns a caller may choose as the metric (EffectiveCost amortizes commitments).
COST_METRICS: tuple[str, ...] = ("EffectiveCost", "BilledCost", "ListCost", "ContractedCost")
#: Columns without which the attribution cannot be computed (the metric column is required too).
REQUIRED_COLUMNS: tuple[str, ...] = ("ChargeCategory", "ResourceId", "Tags", "ServiceName", "BillingCurrency",
                                     "BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart")
#: FOCUS columns that are conditional in the specification: absent ones read as null (with a note).
OPTIONAL_COLUMNS: tuple[str, ...] = ("SubAccountId", "RegionId", "ProviderName")
#: The breakdown dimensions :meth:`FocusTable.breakdown` accepts.
Dimension = Literal["account", "region", "service", "rtype"]

# DuckDB's buffer budget. It spills to the temporary folder past this, so a multi-GB export still fits
# a small worker; 512 MB keeps the whole process under 1 GiB with Python and the query results.
DEFAULT_MEMORY_LIMIT = "512MB"
# Exact to 1e-15 (FOCUS exports carry at most about 10 decimals) up to 1e23 in the billing currency.
_COST_TYPE = "DECIMAL(38, 15)"
_SUFFIXES = (".csv", ".csv.gz", ".gz", ".parquet", ".snappy.parquet", ".zstd.parquet")
# Bare EC2 ids as CUR reports them (ResourceId is the instance id, not its ARN), for the types the
# scanner knows. Other bare ids (vpc-, subnet-) name no type the policy language uses.
_BARE_EC2_PREFIXES = {"i": "ec2:instance", "vol": "ec2:volume", "snap": "ec2:snapshot",
                      "eipalloc": "ec2:elastic-ip", "nat": "ec2:natgateway"}
_BARE_EC2_RE = re.compile(r"^(i|vol|snap|eipalloc|nat)-[0-9a-z]+$")
_ARN_SQL_RE = r"^arn:[^:]*:[^:]+:[^:]*:[^:]*:."


@dataclass(frozen=True, slots=True)
class FocusSource:
    """Where a FOCUS export lives: a local file or folder, or an ``s3://bucket/key`` object or prefix
    (a key ending in ``/`` or an empty key reads every CSV/Parquet object under it)."""

    location: str

    @classmethod
    def of(cls, value: FocusSource | str | os.PathLike[str]) -> FocusSource:
        """Accept a source, a path or a URI string."""
        if isinstance(value, FocusSource):
            return value
        text = os.fspath(value).strip()
        if not text:
            raise InvalidInput("no FOCUS export given", field="focus",
                               fix="pass the path or s3:// URI of a FOCUS cost export (CSV or Parquet)")
        return cls(text)

    @property
    def is_s3(self) -> bool:
        """Whether the export is read from S3."""
        return self.location.startswith("s3://")

    @property
    def display_name(self) -> str:
        """A short name for messages: the file or folder name, never a full local path."""
        return self.location if self.is_s3 else (Path(self.location).name or self.location)


@dataclass(frozen=True, slots=True)
class RowFilter:
    """Which rows of the export count; every given condition must hold. ``start``/``end`` select
    rows whose ChargePeriodStart is in [start, end). ``currency`` keeps one BillingCurrency."""

    accounts: Sequence[str] = ()
    regions: Sequence[str] = ()
    services: Sequence[str] = ()
    providers: Sequence[str] = ()
    start: datetime | None = None
    end: datetime | None = None
    currency: str | None = None


@dataclass(frozen=True, slots=True)
class StageSummary:
    """What staging found: counted rows and the mess seen on the way."""

    rows: int
    null_cost_rows: int
    bad_cost_rows: int
    #: One metric value that is not a number (for the error message), or ``None``.
    bad_cost_example: str | None
    currencies: tuple[str, ...]
    billing_period_start: datetime | None
    billing_period_end: datetime | None
    charge_period_start: datetime | None
    charge_period_end: datetime | None
    missing_optional: tuple[str, ...]
    provider_names: tuple[str, ...]


def resource_type_of(resource_id: str | None) -> str:
    """The ``service:resource`` type a FOCUS ResourceId denotes, or ``""`` when it names none.

    The same rule as the staging SQL (tested to agree): ARNs as ``parse_arn`` reads them, bare EC2 ids
    by prefix, everything else unknown.
    """
    if not resource_id:
        return ""
    rid = resource_id.strip()
    if re.match(_ARN_SQL_RE, rid):
        return _type_of_probe(_arn_probe(rid))
    m = _BARE_EC2_RE.match(rid)
    return _BARE_EC2_PREFIXES[m.group(1)] if m else ""


def _arn_probe(arn: str) -> str:
    """The Python twin of the SQL probe: service, the resource part's type word, whether qualified."""
    parts = arn.split(":", 5)
    resource = parts[5] if len(parts) == 6 else ""
    m = re.search(r"[/:]", resource)
    tail = resource[: m.start()] + "/x" if m else "x"
    return f"arn:aws:{parts[2]}:::{tail}"


def _type_of_probe(probe: str) -> str:
    """Type of a staged probe (``arn:aws:SVC:::WORD/x``, ``arn:aws:SVC:::x`` or ``id:PREFIX``)."""
    if not probe:
        return ""
    if probe.startswith("id:"):
        return _BARE_EC2_PREFIXES.get(probe[3:], "")
    try:
        return parse_arn(probe).type_key
    except ValueError:
        return ""


def _probe_sql(rid: str) -> str:
    """SQL for a low-cardinality stand-in of ``rid`` that keeps exactly what decides its type.

    For an ARN: the service, plus the resource part's leading word when a ``/`` or ``:`` follows it
    (``instance/i-1`` -> ``instance/x``); a resource part without one becomes ``x``, which
    ``parse_arn`` types the same way as the real name (``sqs`` -> ``queue``, others -> ``resource``).
    The ids themselves never reach Python, so millions of distinct resources cost nothing there.
    """
    res = f"regexp_extract({rid}, '^arn:[^:]*:[^:]*:[^:]*:[^:]*:(.*)$', 1)"
    return (
        f"CASE WHEN {rid} IS NULL THEN '' "
        f"WHEN regexp_matches({rid}, '{_ARN_SQL_RE}') THEN 'arn:aws:' || split_part({rid}, ':', 3) || ':::' || "
        f"CASE WHEN regexp_matches({res}, '[/:]') THEN regexp_extract({res}, '^([^/:]*)', 1) || '/x' ELSE 'x' END "
        f"WHEN regexp_matches({rid}, '{_BARE_EC2_RE.pattern}') THEN 'id:' || split_part({rid}, '-', 1) "
        "ELSE '' END"
    )


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    """A SQL string literal (DuckDB cannot take prepared parameters in a view's definition)."""
    return "'" + text.replace("'", "''") + "'"


def _text(expr: str) -> str:
    """A column as trimmed text, with '' and the literal NULL some exports write read as null."""
    return f"NULLIF(NULLIF(TRIM(CAST({expr} AS VARCHAR)), ''), 'NULL')"


class FocusTable:
    """An opened FOCUS export on its own DuckDB connection. Use :func:`open_focus` to make one.

    :meth:`stage` reads the export once into groups of rows (normalized columns plus a type probe);
    :meth:`reduce_tags` keeps the tag keys that matter, :meth:`combinations` lists what a policy must
    judge, :meth:`load_verdicts` joins the verdicts
    back, and the other methods each run one aggregate query.
    """

    def __init__(self, source: FocusSource, con: duckdb.DuckDBPyConnection, columns: dict[str, str],
                 file_format: str, files: int, workdir: tempfile.TemporaryDirectory[str]) -> None:
        self.source = source
        self.con = con
        #: Column name -> DuckDB type, as found in the export.
        self.columns = columns
        self.file_format = file_format
        self.files = files
        self._workdir = workdir
        self._lower = {name.casefold(): name for name in columns}
        self._staged = False
        self._reduced = False
        self._classified = False

    # -- columns -------------------------------------------------------------------------------

    def column(self, name: str) -> str | None:
        """The export's spelling of FOCUS column ``name`` (matched ignoring case), or ``None``."""
        return self._lower.get(name.casefold())

    def require(self, metric: str) -> None:
        """Raise InvalidInput naming every required column the export lacks."""
        missing = [c for c in (metric, *REQUIRED_COLUMNS) if self.column(c) is None]
        if missing and len(self.columns) == 1 and all(c in next(iter(self.columns)) for c in missing):
            # DuckDB reads a CSV whose dialect it cannot detect as one column named after the whole header.
            raise InvalidInput(
                f"{self.source.display_name} names the FOCUS columns in its header, but its lines cannot be parsed "
                "as CSV (a malformed line, such as an unterminated quote?)", field="focus",
                fix="repair the file or export it again")
        if missing:
            raise InvalidInput(
                f"{self.source.display_name} is not a FOCUS cost export: missing column(s) {', '.join(missing)}",
                field="focus", fix="pass a FOCUS 1.x export (AWS Data Exports 'FOCUS 1.0', Azure or GCP FOCUS "
                "export); its header must name these columns")

    def _tags_sql(self) -> str:
        name = self.column("Tags")
        assert name is not None
        kind = self.columns[name].upper()
        # Parquet exports (AWS CUR 2.0) store Tags as MAP(VARCHAR, VARCHAR); JSON text is the common form.
        if kind.startswith(("MAP", "STRUCT")):
            return f"NULLIF(CAST(to_json({_quote(name)}) AS VARCHAR), '{{}}')"
        return _text(_quote(name))

    def resource_totals(self, metric: str) -> tuple[dict[str, Decimal], int, tuple[str, ...]]:
        """Spend of ``metric`` per ResourceId over the whole export (untaggable charge categories left
        out), the number of distinct billing periods the export covers, and its currencies. One pass,
        aggregated in DuckDB: Python sees one row per resource."""
        self.require(metric)

        def col(name: str) -> str:
            actual = self.column(name)
            return _quote(actual) if actual is not None else "NULL"

        untaggable = ", ".join(_literal(c.casefold()) for c in ("Tax", "Credit", "Adjustment"))
        rows = self._all(f"""
            SELECT {_text(col("ResourceId"))} AS rid, COALESCE(sum(TRY_CAST({_text(col(metric))} AS {_COST_TYPE})), 0)
            FROM focus_raw
            WHERE {_text(col("ResourceId"))} IS NOT NULL
              AND lower(COALESCE({_text(col("ChargeCategory"))}, '')) NOT IN ({untaggable})
            GROUP BY 1""")
        periods, currencies = self._one(f"""
            SELECT count(DISTINCT TRY_CAST({col("BillingPeriodStart")} AS TIMESTAMPTZ)),
                   list(DISTINCT {_text(col("BillingCurrency"))}) FILTER (WHERE {_text(col("BillingCurrency"))}
                                                                           IS NOT NULL)
            FROM focus_raw""")
        return ({str(rid): as_decimal(cost) for rid, cost in rows}, max(1, int(periods or 0)),
                tuple(sorted(currencies or ())))

    # -- staging -------------------------------------------------------------------------------

    def stage(self, metric: str, row_filter: RowFilter, untaggable_categories: Sequence[str]) -> StageSummary:
        """Read the export once into ``focus_groups``: the counted rows grouped by everything the
        attribution needs, so later queries touch thousands of groups, not millions of rows.

        Group columns: ``account``, ``region``, ``service``, ``provider``, ``currency``,
        ``category``, ``has_resource``, ``reason`` (why the rows are untaggable:
        ``charge_category:<X>`` for a ChargeCategory in ``untaggable_categories``, compared ignoring
        case, else ``no_resource_id``; null for taggable rows), ``taggable``, ``tags`` (JSON text,
        ``''`` for none) and ``probe`` (see :func:`_probe_sql`). Figures: ``cost`` (sum of the metric
        as DECIMAL, a missing value read as 0), ``rows``, ``negative_cost``/``negative_rows`` (rows
        with a cost below 0).
        """
        self.require(metric)
        if not untaggable_categories:
            raise ValueError("untaggable_categories must not be empty")

        def col(name: str) -> str:
            actual = self.column(name)
            return _quote(actual) if actual is not None else "NULL"

        category = _text(col("ChargeCategory"))
        untaggable = ", ".join(_literal(c.casefold()) for c in untaggable_categories)
        where, params = self._where(row_filter, col)
        # ChargePeriodStart/BillingPeriod* are TIMESTAMP in Parquet and text in CSV: TRY_CAST reads both,
        # with offsets ('Z', '+02:00') honoured; the session is UTC.
        rows = f"""
            SELECT
                TRY_CAST(__cost AS {_COST_TYPE}) AS __value, __cost,
                {_text(col("SubAccountId"))} AS account,
                {_text(col("RegionId"))} AS region,
                {_text(col("ServiceName"))} AS service,
                {_text(col("ProviderName"))} AS provider,
                {_text(col("BillingCurrency"))} AS currency,
                {category} AS category,
                __rid IS NOT NULL AS has_resource,
                CASE WHEN lower({category}) IN ({untaggable}) THEN 'charge_category:' || {category}
                     WHEN __rid IS NULL THEN 'no_resource_id' END AS reason,
                COALESCE({self._tags_sql()}, '') AS tags,
                {_probe_sql("__rid")} AS probe,
                TRY_CAST({col("BillingPeriodStart")} AS TIMESTAMPTZ) AS __period_start,
                TRY_CAST({col("BillingPeriodEnd")} AS TIMESTAMPTZ) AS __period_end,
                TRY_CAST({col("ChargePeriodStart")} AS TIMESTAMPTZ) AS __charge_start,
                TRY_CAST({col("ChargePeriodEnd")} AS TIMESTAMPTZ) AS __charge_end
            FROM (SELECT *, {_text(col("ResourceId"))} AS __rid, {_text(col(metric))} AS __cost
                  FROM focus_raw) AS src
            {where}"""
        sql = f"""
            CREATE OR REPLACE TEMP TABLE focus_groups AS
            SELECT account, region, service, provider, currency, category, has_resource, reason,
                   reason IS NULL AS taggable, tags, probe,
                   COALESCE(sum(__value), 0) AS cost, count(*) AS rows,
                   COALESCE(sum(__value) FILTER (WHERE __value < 0), 0) AS negative_cost,
                   count(*) FILTER (WHERE __value < 0) AS negative_rows,
                   count(*) FILTER (WHERE __cost IS NULL) AS null_cost_rows,
                   count(*) FILTER (WHERE __cost IS NOT NULL AND __value IS NULL) AS bad_cost_rows,
                   min(__cost) FILTER (WHERE __cost IS NOT NULL AND __value IS NULL) AS bad_cost_example,
                   min(__period_start) AS period_start, max(__period_end) AS period_end,
                   min(__charge_start) AS charge_start, max(__charge_end) AS charge_end
            FROM ({rows}) GROUP BY ALL
        """
        self._execute(sql, params)
        self._staged = True
        self._reduced = False
        self._classified = False
        row = self._one("""
            SELECT COALESCE(sum(rows), 0), COALESCE(sum(null_cost_rows), 0), COALESCE(sum(bad_cost_rows), 0),
                   min(bad_cost_example), list(DISTINCT currency) FILTER (WHERE currency IS NOT NULL),
                   min(period_start), max(period_end), min(charge_start), max(charge_end),
                   list(DISTINCT provider) FILTER (WHERE provider IS NOT NULL)
            FROM focus_groups""")
        missing = tuple(c for c in OPTIONAL_COLUMNS if self.column(c) is None)
        return StageSummary(rows=int(row[0]), null_cost_rows=int(row[1]), bad_cost_rows=int(row[2]),
                            bad_cost_example=row[3], currencies=tuple(sorted(row[4] or ())),
                            billing_period_start=row[5], billing_period_end=row[6],
                            charge_period_start=row[7], charge_period_end=row[8], missing_optional=missing,
                            provider_names=tuple(sorted(row[9] or ())))

    def _where(self, f: RowFilter, col: Any) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for values, name in ((f.accounts, "SubAccountId"), (f.regions, "RegionId"),
                             (f.services, "ServiceName"), (f.providers, "ProviderName")):
            if values:
                clauses.append(f"list_contains(?::VARCHAR[], {_text(col(name))})")
                params.append(list(values))
        if f.start is not None:
            clauses.append(f"TRY_CAST({col('ChargePeriodStart')} AS TIMESTAMPTZ) >= ?::TIMESTAMPTZ")
            params.append(f.start)
        if f.end is not None:
            clauses.append(f"TRY_CAST({col('ChargePeriodStart')} AS TIMESTAMPTZ) < ?::TIMESTAMPTZ")
            params.append(f.end)
        if f.currency:
            clauses.append(f"{_text(col('BillingCurrency'))} = ?")
            params.append(f.currency)
        return ("WHERE " + " AND ".join(clauses) if clauses else ""), params

    def export_currencies(self) -> tuple[str, ...]:
        """Every BillingCurrency in the export, before filters (reads the export again: for messages)."""
        name = self.column("BillingCurrency")
        if name is None:
            return ()
        return tuple(sorted(str(r[0]) for r in self._all(
            f"SELECT DISTINCT {_text(_quote(name))} AS c FROM focus_raw WHERE c IS NOT NULL")))

    # -- distinct combinations and verdicts ------------------------------------------------------

    def reduce_tags(self, relevant_keys: Collection[str]) -> None:
        """Build ``tag_sets``: each distinct Tags text with ``rtags``, the same JSON object keeping only
        keys that may matter (sorted), so tag sets that differ only in other keys (Name, per-resource
        ids) are judged once.

        A key is kept when its lowercase form is in ``relevant_keys`` (give them lowercased and
        casefolded), and always when it is not plain ASCII (DuckDB's ``lower`` is not Python's
        ``casefold``; keeping more never changes a verdict). Text that is not a JSON object, or an
        object with a repeated key, is kept whole for Python to judge (and flag).
        """
        self._check_staged()
        keys = ", ".join(_literal(k) for k in sorted(set(relevant_keys)))
        keep = f"lower(e.key) IN ({keys})" if keys else "false"
        self._execute(f"""
            CREATE OR REPLACE TEMP TABLE tag_sets AS
            SELECT tags, CASE
                WHEN tags = '' THEN ''
                WHEN m IS NULL THEN tags
                ELSE NULLIF(CAST(to_json(map_from_entries(list_sort(
                     [e FOR e IN map_entries(m) IF {keep} OR NOT regexp_matches(e.key, '^[\x00-\x7F]*$')]
                     ))) AS VARCHAR), '{{}}') END AS rtags
            FROM (SELECT tags, TRY_CAST(TRY_CAST(tags AS JSON) AS MAP(VARCHAR, JSON)) AS m
                  FROM (SELECT DISTINCT tags FROM focus_groups))""")
        self._reduced = True

    def combinations(self, *, with_account: bool = False) -> list[tuple[str, str, str | None]]:
        """Distinct (type probe, reduced Tags text, account) of rows that have a ResourceId: what the
        policy must judge. ``account`` is ``None`` unless ``with_account`` (rules differ per account)."""
        self._check_reduced()
        account = "g.account" if with_account else "NULL::VARCHAR"
        return [(str(p), str(t), a) for p, t, a in self._all(f"""
            SELECT DISTINCT g.probe, COALESCE(s.rtags, ''), {account}
            FROM focus_groups g JOIN tag_sets s USING (tags) WHERE g.has_resource""")]

    @staticmethod
    def type_of_probe(probe: str) -> str:
        """The resource type a staged probe stands for (``""`` when unknown)."""
        return _type_of_probe(probe)

    def load_verdicts(self, *, probes: list[str], tags: list[str], accounts: list[str | None], types: list[str],
                      attributable: list[bool], failing: list[list[str]], problems: list[list[str]],
                      applicable: list[list[str]], unreadable: list[bool], selected: list[bool],
                      with_account: bool, keep_without_resource: bool) -> None:
        """Store one verdict per combination (as listed by :meth:`combinations`; ``tags`` are the reduced
        texts) and build the ``classified`` table: each group of rows with its
        ``rtype`` (type label), ``status`` (untaggable | attributable | gap), ``failing`` required keys,
        ``problems`` (``key<TAB>violation_type``), ``applicable`` required keys, ``unreadable`` and
        ``selected``. Rows without a ResourceId have no combination: they are selected when
        ``keep_without_resource``."""
        self._check_reduced()
        self._execute("""
            CREATE OR REPLACE TEMP TABLE verdicts AS
            SELECT unnest(?::VARCHAR[]) AS probe, unnest(?::VARCHAR[]) AS tags, unnest(?::VARCHAR[]) AS account,
                   unnest(?::VARCHAR[]) AS rtype, unnest(?::BOOLEAN[]) AS attributable,
                   unnest(?::VARCHAR[][]) AS failing, unnest(?::VARCHAR[][]) AS problems,
                   unnest(?::VARCHAR[][]) AS applicable, unnest(?::BOOLEAN[]) AS unreadable,
                   unnest(?::BOOLEAN[]) AS selected""",
                      [probes, tags, accounts, types, attributable, failing, problems, applicable, unreadable,
                       selected])
        account_join = "AND r.account IS NOT DISTINCT FROM v.account" if with_account else ""
        keep = "true" if keep_without_resource else "false"
        # A table, not a view: it holds groups (not rows), and every aggregate below reads it. An inner
        # join would drop groups whose combination went missing; the LEFT JOIN plus unjudged_rows()
        # proves none did.
        self._execute(f"""
            CREATE OR REPLACE TEMP TABLE classified AS
            SELECT r.cost, r.rows, r.negative_cost, r.negative_rows, r.account, r.region, r.service,
                   r.provider, r.category, r.reason, r.taggable, r.has_resource, v.probe IS NOT NULL AS judged,
                   CASE WHEN NOT r.has_resource THEN '(no resource id)'
                        WHEN v.rtype IS NULL OR v.rtype = '' THEN '(unknown)' ELSE v.rtype END AS rtype,
                   CASE WHEN NOT r.taggable THEN 'untaggable'
                        WHEN v.attributable THEN 'attributable' ELSE 'gap' END AS status,
                   COALESCE(v.failing, []) AS failing, COALESCE(v.problems, []) AS problems,
                   COALESCE(v.applicable, []) AS applicable,
                   COALESCE(v.unreadable, false) AS unreadable,
                   CASE WHEN r.has_resource THEN COALESCE(v.selected, false) ELSE {keep} END AS selected
            FROM focus_groups r JOIN tag_sets s USING (tags)
            LEFT JOIN verdicts v ON r.probe = v.probe AND COALESCE(s.rtags, '') = v.tags {account_join}""")
        self._classified = True

    def unjudged_rows(self) -> int:
        """Rows with a ResourceId that found no verdict (always 0 unless the combinations were incomplete)."""
        self._check_classified()
        return int(self._one("SELECT COALESCE(sum(rows), 0) FROM classified WHERE has_resource AND NOT judged")[0])

    # -- aggregates (one query each) ------------------------------------------------------------

    _FIGURES = """
        COALESCE(sum(rows), 0) AS rows,
        COALESCE(sum(cost), 0) AS total,
        COALESCE(sum(cost) FILTER (WHERE status <> 'untaggable'), 0) AS taggable,
        COALESCE(sum(cost) FILTER (WHERE status = 'untaggable'), 0) AS untaggable,
        COALESCE(sum(cost) FILTER (WHERE status = 'attributable'), 0) AS attributable,
        COALESCE(sum(cost) FILTER (WHERE status = 'gap'), 0) AS gap,
        COALESCE(sum(rows) FILTER (WHERE status <> 'untaggable'), 0) AS taggable_rows,
        COALESCE(sum(rows) FILTER (WHERE status = 'untaggable'), 0) AS untaggable_rows,
        COALESCE(sum(rows) FILTER (WHERE status = 'attributable'), 0) AS attributable_rows,
        COALESCE(sum(rows) FILTER (WHERE status = 'gap'), 0) AS gap_rows,
        COALESCE(sum(cost) FILTER (WHERE status = 'attributable' AND len(applicable) = 0), 0) AS out_of_scope,
        COALESCE(sum(rows) FILTER (WHERE status = 'attributable' AND len(applicable) = 0), 0) AS out_of_scope_rows"""

    def totals(self) -> dict[str, Any]:
        """Cost and row figures over every selected row."""
        self._check_classified()
        return self._dicts(f"SELECT {self._FIGURES} FROM classified WHERE selected")[0]

    def breakdown(self, dimension: Dimension) -> list[dict[str, Any]]:
        """The same figures per value of one dimension (null values grouped under ``(none)``), largest
        gap first."""
        self._check_classified()
        if dimension not in ("account", "region", "service", "rtype"):
            raise ValueError(f"unknown dimension {dimension!r}")
        return self._dicts(f"""
            SELECT COALESCE({dimension}, '(none)') AS key, {self._FIGURES}
            FROM classified WHERE selected GROUP BY 1 ORDER BY gap DESC, total DESC, key""")

    def tag_keys(self) -> list[dict[str, Any]]:
        """Per required key: the cost and rows of gap rows failing it (``gap``/``gap_rows``) and of
        taggable rows on which it is required (``applicable``/``applicable_rows``)."""
        self._check_classified()
        return self._dicts("""
            WITH fails AS (
                SELECT k AS key, sum(cost) AS gap, sum(rows) AS gap_rows
                FROM (SELECT unnest(failing) AS k, cost, rows FROM classified WHERE status = 'gap' AND selected)
                GROUP BY k),
            applies AS (
                SELECT k AS key, sum(cost) AS applicable, sum(rows) AS applicable_rows
                FROM (SELECT unnest(applicable) AS k, cost, rows FROM classified WHERE taggable AND selected)
                GROUP BY k)
            SELECT key, COALESCE(f.gap, 0) AS gap, COALESCE(f.gap_rows, 0) AS gap_rows,
                   COALESCE(a.applicable, 0) AS applicable, COALESCE(a.applicable_rows, 0) AS applicable_rows
            FROM applies a FULL JOIN fails f USING (key) ORDER BY gap DESC, key""")

    def tag_key_problems(self) -> list[dict[str, Any]]:
        """Per (required key, violation type): cost and rows of gap rows with that problem."""
        self._check_classified()
        return self._dicts("""
            SELECT split_part(p, chr(9), 1) AS key, split_part(p, chr(9), 2) AS problem,
                   sum(cost) AS cost, sum(rows) AS rows
            FROM (SELECT unnest(problems) AS p, cost, rows FROM classified WHERE status = 'gap' AND selected)
            GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2""")

    def untaggable_reasons(self) -> list[dict[str, Any]]:
        """Cost and rows of untaggable rows per reason (``no_resource_id`` or ``charge_category:X``)."""
        self._check_classified()
        return self._dicts("""
            SELECT reason AS key, COALESCE(sum(cost), 0) AS cost, sum(rows) AS rows
            FROM classified WHERE status = 'untaggable' AND selected GROUP BY reason ORDER BY reason""")

    def flagged(self) -> dict[str, Any]:
        """Taggable rows whose Tags were unreadable, whose ResourceId named no known type, and whose cost is
        negative."""
        self._check_classified()
        return self._dicts("""
            SELECT COALESCE(sum(rows) FILTER (WHERE unreadable), 0) AS unreadable_rows,
                   COALESCE(sum(cost) FILTER (WHERE unreadable), 0) AS unreadable_cost,
                   COALESCE(sum(rows) FILTER (WHERE rtype = '(unknown)'), 0) AS untyped_rows,
                   COALESCE(sum(cost) FILTER (WHERE rtype = '(unknown)'), 0) AS untyped_cost,
                   COALESCE(sum(negative_rows), 0) AS negative_rows,
                   COALESCE(sum(negative_cost), 0) AS negative_cost
            FROM classified WHERE taggable AND selected""")[0]

    # -- plumbing ------------------------------------------------------------------------------

    def _check_staged(self) -> None:
        if not self._staged:
            raise RuntimeError("call stage() first")

    def _check_reduced(self) -> None:
        if not self._reduced:
            raise RuntimeError("call reduce_tags() first")

    def _check_classified(self) -> None:
        if not self._classified:
            raise RuntimeError("call load_verdicts() first")

    def _execute(self, sql: str, params: list[Any] | None = None) -> None:
        try:
            self.con.execute(sql, params or [])
        except duckdb.Error as exc:
            raise _read_error(self.source, exc) from exc

    def _fetch(self, sql: str) -> duckdb.DuckDBPyConnection:
        try:
            return self.con.execute(sql)
        except duckdb.Error as exc:
            # The export is read lazily, so a malformed line can surface in any query.
            raise _read_error(self.source, exc) from exc

    def _one(self, sql: str) -> tuple[Any, ...]:
        row = self._fetch(sql).fetchone()
        assert row is not None
        return tuple(row)

    def _all(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._fetch(sql).fetchall()]

    def _dicts(self, sql: str) -> list[dict[str, Any]]:
        cur = self._fetch(sql)
        names = [d[0] for d in cur.description or ()]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def close(self) -> None:
        """Close the connection and delete downloaded files and spill space."""
        try:
            self.con.close()
        finally:
            self._workdir.cleanup()

    def __enter__(self) -> FocusTable:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def as_decimal(value: Any) -> Decimal:
    """A DuckDB sum (Decimal, or None for an empty group) as a Decimal."""
    return Decimal(0) if value is None else Decimal(value)


def _read_error(source: FocusSource, exc: Exception) -> InvalidInput:
    # DuckDB's first line says what is wrong (a bad quote, a missing magic number); the rest is a dump.
    # Local paths are cut out: messages name the file, never where it lives.
    text = str(exc).strip()
    reason = text.splitlines()[0][:300] if text else type(exc).__name__
    if not source.is_s3:
        folder = str(Path(source.location).expanduser().resolve().parent)
        reason = reason.replace(folder + os.sep, "").replace(folder, "")
    return InvalidInput(f"{source.display_name} cannot be read as a CSV or Parquet FOCUS export ({reason})",
                        field="focus", fix="pass a FOCUS export as CSV, gzip'd CSV or Parquet")


# ------------------------------------------------------------------------------------------ opening

def open_focus(source: FocusSource | str | os.PathLike[str], *, s3_client: Any = None,
               memory_limit: str = DEFAULT_MEMORY_LIMIT, threads: int | None = None) -> FocusTable:
    """Open a FOCUS export (downloading ``s3://`` objects first) as view ``focus_raw``.

    ``s3_client`` is a boto3 S3 client; by default one is made from the environment (credentials,
    ``AWS_ENDPOINT_URL``). Raises InvalidInput for a missing, empty or unreadable export.
    """
    src = FocusSource.of(source)
    workdir = tempfile.TemporaryDirectory(prefix="finops-focus-")
    try:
        files = _download_s3(src, Path(workdir.name), s3_client) if src.is_s3 else _local_files(src)
        file_format = _format_of(src, files)
        config: dict[str, Any] = {
            # httpfs and friends would be downloaded on first use; nothing may download at run time.
            "autoinstall_known_extensions": False,
            "memory_limit": memory_limit,
            "temp_directory": str(Path(workdir.name) / "spill"),
        }
        if threads is not None:
            config["threads"] = threads
        con = duckdb.connect(":memory:", config=config)
        try:
            con.execute("SET TimeZone = 'UTC'")
            # DuckDB draws a progress bar on stdout for long queries; stdout carries the CLI's JSON.
            con.execute("SET enable_progress_bar = false")
            names = "[" + ", ".join(_literal(str(p)) for p in files) + "]"
            if file_format == "parquet":
                reader = f"read_parquet({names}, union_by_name = true)"
            else:
                # Every column as text: the sniffer would otherwise read 12-digit account ids as
                # numbers (losing leading zeros) and guess types from a sample. Costs are cast later.
                compression = ", compression = 'gzip'" if file_format == "csv.gz" else ""
                reader = (f"read_csv({names}, all_varchar = true, header = true, union_by_name = true, "
                          f"nullstr = ['NULL', '']{compression})")
            # A view over the files is not a query yet; DESCRIBE makes DuckDB read the header/schema.
            con.execute(f"CREATE TEMP VIEW focus_raw AS SELECT * FROM {reader}")
            columns = {str(r[0]): str(r[1]) for r in con.execute("DESCRIBE focus_raw").fetchall()}
        except duckdb.Error as exc:
            con.close()
            raise _read_error(src, exc) from exc
        return FocusTable(src, con, columns, file_format, len(files), workdir)
    except BaseException:
        workdir.cleanup()
        raise


def _local_files(src: FocusSource) -> list[Path]:
    path = Path(src.location).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(_SUFFIXES))
        if not files:
            raise InvalidInput(f"folder '{src.display_name}' holds no .csv, .csv.gz or .parquet file",
                               field="focus", fix="pass a FOCUS export file or the folder of its parts")
        return files
    raise InvalidInput(f"FOCUS export '{src.display_name}' does not exist", field="focus",
                       fix="pass the path of a FOCUS export (CSV, CSV.gz or Parquet) or an s3:// URI")


def _format_of(src: FocusSource, files: list[Path]) -> str:
    """'parquet', 'csv.gz' or 'csv', read from the first bytes; one export has one format."""
    kinds = set()
    for path in files:
        try:
            with open(path, "rb") as fh:
                head = fh.read(4)
        except OSError as exc:
            raise InvalidInput(f"{src.display_name}: file '{path.name}' cannot be read ({exc.strerror or exc})",
                               field="focus", fix="check the file's permissions") from exc
        if not head:
            raise InvalidInput(f"{src.display_name}: file '{path.name}' is empty", field="focus",
                               fix="pass a complete FOCUS export")
        kinds.add("parquet" if head == b"PAR1" else "csv.gz" if head[:2] == b"\x1f\x8b" else "csv")
    if len(kinds) > 1:
        raise InvalidInput(f"{src.display_name} mixes formats ({', '.join(sorted(kinds))})", field="focus",
                           fix="point at parts of one export, all CSV or all Parquet")
    return kinds.pop()


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise InvalidInput(f"'{uri}' names no bucket", field="focus", fix="use s3://BUCKET/KEY")
    return bucket, key


def _download_s3(src: FocusSource, workdir: Path, client: Any) -> list[Path]:
    """Download the object, or every CSV/Parquet object under the prefix, keeping their suffixes."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    bucket, key = _split_s3(src.location)
    if client is None:
        import boto3

        # boto3 reads AWS_ENDPOINT_URL itself (the emulator in tests and the demo).
        client = boto3.client("s3")
    try:
        if key and not key.endswith("/"):
            keys = [key]
        else:
            keys = [obj["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key)
                    for obj in page.get("Contents", ()) if obj["Key"].lower().endswith(_SUFFIXES)]
            if not keys:
                raise InvalidInput(f"{src.location} holds no .csv, .csv.gz or .parquet object", field="focus",
                                   fix="check the bucket and prefix of the export")
        out: list[Path] = []
        for i, k in enumerate(sorted(keys)):
            name = k.rsplit("/", 1)[-1] or "object"
            target = workdir / f"{i:05d}-{name}"
            with open(target, "wb") as fh:
                client.download_fileobj(bucket, k, fh)
            out.append(target)
        return out
    except NoCredentialsError as exc:
        raise InvalidInput(f"no AWS credentials to read {src.location}", field="focus",
                           fix="configure AWS credentials (environment, profile or role)") from exc
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NoSuchBucket", "403", "AccessDenied", "AllAccessDisabled"):
            what = "not found" if code in ("404", "NoSuchKey", "NoSuchBucket") else "not readable (access denied)"
            raise InvalidInput(f"{src.location} is {what}", field="focus",
                               fix="check the bucket, key and s3:GetObject/s3:ListBucket permissions") from exc
        raise Unavailable(f"S3 refused the download of {src.location} ({code or 'error'})",
                          fix="retry later") from exc
    except BotoCoreError as exc:
        raise Unavailable(f"S3 cannot be reached to read {src.location} ({type(exc).__name__})",
                          fix="check the network and AWS_ENDPOINT_URL") from exc
