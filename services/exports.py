"""Violation exports: every violation of a finished scan as CSV or JSON, with column selection and filters.

One export is described by an :class:`ExportSpec` (checked once by :func:`prepare`, before any row is
read, so a front door can answer a 4xx before it starts streaming) and rendered by :func:`stream` as
text chunks. Rows are read page by page (keyset pagination on the scan's deterministic order: errors
first, then resource ARN, then rule), so a scan with 100,000 violations never sits in memory as one
list; only the MCP resource read (:func:`render`) joins the whole file.

CSV: one header line, then one line per violation; every cell is filled (an empty string where the
violation has no value, allowed values joined with ``|``), and cells that a spreadsheet would run as
a formula are neutralized with the same guard the CLI's CSV uses. JSON: one object with the scan id,
status, data quality, the filters and columns, ``row_count`` and ``violations`` (objects with exactly
the selected keys; absent values are ``null`` and allowed values a list, since JSON can say so).
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Literal

from sqlalchemy import func, select, tuple_

from scanner.providers.aws import registry
from services.db.models import ScanResourceRow, ScanRow, ViolationRow
from services.errors import InvalidInput, NotFound
from services.report_builder import resolve_scan_id
from services.reports import CSV_COLUMNS, _csv_safe
from services.resource_costs import with_cost_impact
from services.runtime import Runtime
from services.scans import policy_lookup
from services.schemas import DataQuality, ViolationOut

ExportFormat = Literal["csv", "json"]
Severity = Literal["error", "warning"]
FORMATS: dict[str, tuple[str, str]] = {  # name -> (media type, file extension)
    "csv": ("text/csv", "csv"),
    "json": ("application/json", "json"),
}
#: Every column an export can have, in file order: a violation's fields (ARN first).
COLUMNS: tuple[str, ...] = (*CSV_COLUMNS, "rule_id", "rule_source", "cost_impact_monthly")
#: The columns of an export that names none: the scan-result contract's violation fields.
DEFAULT_COLUMNS: tuple[str, ...] = CSV_COLUMNS
#: The severity spellings accepted: the peer server's (all, errors_only, warnings_only) and the API's.
SEVERITIES: dict[str, Literal["error", "warning"] | None] = {
    "all": None, "errors_only": "error", "warnings_only": "warning", "error": "error", "warning": "warning"}
#: Rows read per database round trip.
PAGE_SIZE = 1000
# How many accepted values an error message lists.
_LIST_IN_ERROR = 20


@dataclass(frozen=True)
class ExportSpec:
    """A checked export request: which scan, format, columns and filters."""

    scan_id: str
    scan_status: str
    data_quality: DataQuality
    format: ExportFormat
    columns: tuple[str, ...]
    severity: Literal["error", "warning"] | None = None
    resource_types: tuple[str, ...] | None = None
    accounts: tuple[str, ...] | None = None
    regions: tuple[str, ...] | None = None
    tag_names: tuple[str, ...] | None = None
    #: Set by :func:`prepare`: how many violations match (counted once, before streaming).
    row_count: int = field(default=0)

    @property
    def media_type(self) -> str:
        return FORMATS[self.format][0]

    @property
    def extension(self) -> str:
        return FORMATS[self.format][1]

    @property
    def filename(self) -> str:
        return f"violations-{self.scan_id}.{self.extension}"

    def filters(self) -> dict[str, Any]:
        """The filters in force (None when not filtered), as the JSON export and the tool answer show them."""
        return {"severity": self.severity, "resource_types": _listed(self.resource_types),
                "accounts": _listed(self.accounts), "regions": _listed(self.regions),
                "tag_names": _listed(self.tag_names)}


def _listed(values: tuple[str, ...] | None) -> list[str] | None:
    return list(values) if values is not None else None


# ------------------------------------------------------------------------------------------- checks

def prepare(rt: Runtime, *, scan_id: str | None = None, format: str = "csv", columns: Sequence[str] | None = None,
            severity: str | None = None, resource_types: Sequence[str] | None = None,
            accounts: Sequence[str] | None = None, regions: Sequence[str] | None = None,
            tag_names: Sequence[str] | None = None) -> ExportSpec:
    """Check an export request and count its rows; every problem is an InvalidInput or NotFound naming
    the field and the fix. ``scan_id`` None means the latest finished scan. Lists may hold
    comma-separated entries (``["ec2:instance,s3:bucket"]``), as query strings and CLI options do."""
    fmt, cols, sev = check_options(format=format, columns=columns, severity=severity)
    try:
        sid = resolve_scan_id(rt, scan_id)
    except NotFound:
        if scan_id is None:
            raise NotFound("no finished scan yet: an export needs one", field="scan_id",
                           fix="run check_tag_compliance first (or `finops-tags scan`, or POST /v1/scans), then "
                               "export again") from None
        raise
    with rt.db.session() as s:
        scan = s.get(ScanRow, sid)
        assert scan is not None  # resolve_scan_id checked it
        r = ScanResourceRow
        seen_types = set(s.scalars(select(r.resource_type).where(r.scan_id == sid).distinct()))
        types = _check_values("resource_types", resource_types, set(registry.all_types()) | seen_types,
                              fix="omit it for every type of the scan, or use types such as ec2:instance")
        if types == ("all",):
            types = None
        accts = _check_values("accounts", accounts, set(s.scalars(select(r.account_id)
                                                                  .where(r.scan_id == sid).distinct())),
                              fix="omit it for every account of the scan, or use the scan's account ids")
        regs = _check_values("regions", regions, set(s.scalars(select(r.region).where(r.scan_id == sid).distinct())),
                             fix="omit it for every region of the scan, or use the scan's regions")
        tags = _check_tag_names(tag_names, set(s.scalars(select(ViolationRow.tag_name)
                                                         .where(ViolationRow.scan_id == sid).distinct())))
        spec = ExportSpec(scan_id=sid, scan_status=scan.status,
                          data_quality=DataQuality.model_validate(scan.data_quality or {"status": "partial"}),
                          format=fmt, columns=cols, severity=sev, resource_types=types, accounts=accts,
                          regions=regs, tag_names=tags)
        count = s.scalar(select(func.count()).select_from(ViolationRow).where(*_clauses(spec)))
    return dataclasses.replace(spec, row_count=int(count or 0))


def check_options(*, format: str = "csv", columns: Sequence[str] | None = None,
                  severity: str | None = None) -> tuple[ExportFormat, tuple[str, ...], Severity | None]:
    """Check the options that need no database (a front door can fail fast on a typo): the format, the
    columns (default :data:`DEFAULT_COLUMNS`) and the severity (None for all)."""
    return _check_format(format), _check_columns(columns), _check_severity(severity)


def _split(values: Sequence[str] | str | None) -> list[str] | None:
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    return list(dict.fromkeys(p.strip() for v in values for p in str(v).split(",") if p.strip()))


def _did_you_mean(value: str, known: Sequence[str]) -> str:
    by_fold = {k.casefold(): k for k in known}
    close = [by_fold[value.casefold()]] if value.casefold() in by_fold else \
        difflib.get_close_matches(value, list(known), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'? " if close else ""


def _check_format(format: str) -> ExportFormat:
    name = (format or "").strip().lower()
    if name == "csv":
        return "csv"
    if name == "json":
        return "json"
    raise InvalidInput(f"unknown export format '{format}'", field="format", fix="use csv or json")


def _check_columns(columns: Sequence[str] | None) -> tuple[str, ...]:
    wanted = _split(columns)
    if wanted is None:
        return DEFAULT_COLUMNS
    if not wanted:
        raise InvalidInput("the list of columns is empty", field="columns",
                           fix="omit it for the default columns (" + ", ".join(DEFAULT_COLUMNS) + "), or name some")
    for name in wanted:
        if name not in COLUMNS:
            raise InvalidInput(f"unknown column '{name}'", field="columns",
                               fix=_did_you_mean(name, COLUMNS) + "known columns: " + ", ".join(COLUMNS))
    return tuple(wanted)


def _check_severity(severity: str | None) -> Literal["error", "warning"] | None:
    if severity is None:
        return None
    key = severity.strip().lower()
    if key not in SEVERITIES:
        raise InvalidInput(f"unknown severity '{severity}'", field="severity",
                           fix=_did_you_mean(key, list(SEVERITIES)) + "use all, errors_only or warnings_only")
    return SEVERITIES[key]


def _check_values(name: str, values: Sequence[str] | None, known: set[str], *, fix: str) -> tuple[str, ...] | None:
    """``values`` when each one is known (a filter on a value the scan never saw would silently export
    nothing); ``("all",)`` passes through for resource types."""
    wanted = _split(values)
    if wanted is None:
        return None
    if not wanted:
        raise InvalidInput(f"the list of {name.replace('_', ' ')} is empty", field=name, fix=fix)
    if name == "resource_types" and wanted == ["all"]:
        return ("all",)
    for value in wanted:
        if value not in known:
            listed = sorted(known)
            raise InvalidInput(f"'{value}' is not among the scan's {name.replace('_', ' ')}", field=name,
                               fix=_did_you_mean(value, listed) + fix + " (" + ", ".join(listed[:_LIST_IN_ERROR])
                               + (", ..." if len(listed) > _LIST_IN_ERROR else "") + ")")
    return tuple(wanted)


def _check_tag_names(values: Sequence[str] | None, violated: set[str]) -> tuple[str, ...] | None:
    """Tag keys are case-sensitive and a tag with no violation is a fine (empty) filter, so only a
    near miss of a violated tag is refused: 'costcenter' when the scan's violations say 'CostCenter'."""
    wanted = _split(values)
    if wanted is None:
        return None
    if not wanted:
        raise InvalidInput("the list of tag names is empty", field="tag_names",
                           fix="omit it for every tag, or name tag keys such as CostCenter")
    for value in wanted:
        if value not in violated:
            hint = _did_you_mean(value, sorted(violated))
            if hint:
                raise InvalidInput(f"no violation of tag '{value}' in this scan", field="tag_names",
                                   fix=hint + "tag keys are case-sensitive")
    return tuple(wanted)


# ------------------------------------------------------------------------------------------ reading

def _clauses(spec: ExportSpec) -> list[Any]:
    v = ViolationRow
    clauses: list[Any] = [v.scan_id == spec.scan_id]
    if spec.severity is not None:
        clauses.append(v.severity == spec.severity)
    for column, values in ((v.resource_type, spec.resource_types), (v.account_id, spec.accounts),
                           (v.region, spec.regions), (v.tag_name, spec.tag_names)):
        if values is not None:
            clauses.append(column.in_(values))
    return clauses


def iter_violations(rt: Runtime, spec: ExportSpec, *, page_size: int = PAGE_SIZE) -> Iterator[ViolationOut]:
    """The export's violations in its deterministic order (errors first, then ARN, then rule), read
    ``page_size`` rows at a time on a keyset (no OFFSET, each page in its own short session)."""
    v = ViolationRow
    after: tuple[str, str, str] | None = None
    while True:
        clauses = _clauses(spec)
        if after is not None:
            clauses.append(tuple_(v.severity, v.resource_arn, v.rule_id) > tuple_(*after))
        with rt.db.session() as s:
            rows = s.scalars(select(v).where(*clauses).order_by(v.severity, v.resource_arn, v.rule_id)
                             .limit(page_size)).all()
            page = [ViolationOut.model_validate(row, from_attributes=True) for row in rows]
            scan = s.get(ScanRow, spec.scan_id)
            policy_for = policy_lookup(scan) if scan is not None else None
        # cost_impact_monthly from the FOCUS export when one is configured (null otherwise).
        yield from with_cost_impact(rt, page, policy_for) if policy_for is not None else page
        if len(page) < page_size:
            return
        last = page[-1]
        after = (last.severity, last.resource_arn, last.rule_id)


def csv_cells(violation: ViolationOut, columns: Sequence[str]) -> list[str]:
    """One CSV line's cells: every one filled, allowed values joined with '|', formulas neutralized."""
    cells = []
    for column in columns:
        value = getattr(violation, column)
        if column == "allowed_values":
            value = "|".join(value) if value else None
        cells.append(_csv_safe("" if value is None else str(value)))
    return cells


def json_row(violation: ViolationOut, columns: Sequence[str]) -> dict[str, Any]:
    """One violation as a JSON object with exactly ``columns`` (absent values null)."""
    data = violation.model_dump(include=set(columns))
    return {c: data[c] for c in columns}


def _csv_text(rows: Iterable[Sequence[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def stream_csv(rt: Runtime, spec: ExportSpec) -> Iterator[str]:
    """The CSV export in chunks (the header, then one chunk per page of rows)."""
    yield _csv_text([spec.columns])
    chunk: list[list[str]] = []
    for violation in iter_violations(rt, spec):
        chunk.append(csv_cells(violation, spec.columns))
        if len(chunk) >= PAGE_SIZE:
            yield _csv_text(chunk)
            chunk = []
    if chunk:
        yield _csv_text(chunk)


def stream_json(rt: Runtime, spec: ExportSpec) -> Iterator[str]:
    """The JSON export in chunks: the header object's fields, then the violations array."""
    head = {"scan_id": spec.scan_id, "scan_status": spec.scan_status,
            "data_quality": spec.data_quality.model_dump(mode="json"), "filters": spec.filters(),
            "columns": list(spec.columns), "row_count": spec.row_count}
    yield json.dumps(head, indent=2, ensure_ascii=False)[:-2] + ',\n  "violations": ['
    first = True
    chunk: list[str] = []
    for violation in iter_violations(rt, spec):
        chunk.append(("\n    " if first else ",\n    ") + json.dumps(json_row(violation, spec.columns),
                                                                     ensure_ascii=False))
        first = False
        if len(chunk) >= PAGE_SIZE:
            yield "".join(chunk)
            chunk = []
    chunk.append("\n  ]\n}\n" if not first else "]\n}\n")
    yield "".join(chunk)


def stream(rt: Runtime, spec: ExportSpec) -> Iterator[str]:
    """The export as text chunks, in its format."""
    return stream_csv(rt, spec) if spec.format == "csv" else stream_json(rt, spec)


def render(rt: Runtime, spec: ExportSpec) -> str:
    """The whole export as one string (for MCP resource reads and small inline answers)."""
    return "".join(stream(rt, spec))


@dataclass(frozen=True)
class Sized:
    """An export measured for a bounded answer: the whole text when it is small, else an estimate."""

    text: str | None
    size_bytes: int
    size_is_estimate: bool
    preview: list[ViolationOut]


def render_if_small(rt: Runtime, spec: ExportSpec, *, max_rows: int, max_bytes: int, preview_rows: int = 5,
                    sample_rows: int = 200) -> Sized:
    """The whole export when it has at most ``max_rows`` rows and ``max_bytes`` bytes (UTF-8). Otherwise
    no text, the first ``preview_rows`` violations, and the size: exact when the rows were few enough to
    render, else extrapolated from the first ``sample_rows`` (never reads the whole scan)."""
    if spec.row_count <= max_rows:
        text = render(rt, spec)
        size = len(text.encode("utf-8"))
        if size <= max_bytes:
            return Sized(text=text, size_bytes=size, size_is_estimate=False, preview=[])
        return Sized(text=None, size_bytes=size, size_is_estimate=False,
                     preview=list(islice(iter_violations(rt, spec, page_size=preview_rows), preview_rows)))
    sample = list(islice(iter_violations(rt, spec, page_size=sample_rows), sample_rows))
    if spec.format == "csv":
        body = _csv_text(csv_cells(v, spec.columns) for v in sample)
        head = len(_csv_text([spec.columns]).encode("utf-8"))
    else:
        body = "".join(json.dumps(json_row(v, spec.columns), ensure_ascii=False) + ",\n    " for v in sample)
        head = len(next(stream_json(rt, spec)).encode("utf-8"))  # the header chunk reads no row
    per_row = len(body.encode("utf-8")) / max(1, len(sample))
    return Sized(text=None, size_bytes=int(head + per_row * spec.row_count), size_is_estimate=True,
                 preview=sample[:preview_rows])
