"""Render a scan result as JSON, CSV or Markdown (the CLI and, later, report tools share these)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable

from services.schemas import ScanResult, ViolationOut

CSV_COLUMNS = ("resource_arn", "resource_id", "resource_type", "account_id", "region", "tag_name",
               "violation_type", "severity", "current_value", "allowed_values", "message", "suggestion")


def with_all_violations(result: ScanResult, violations: Iterable[ViolationOut]) -> ScanResult:
    """The result carrying every violation (not a page), as ``--format json`` promises."""
    items = list(violations)
    return result.model_copy(update={"violations": items, "violations_returned": len(items), "next_cursor": None})


def render_json(result: ScanResult) -> str:
    return json.dumps(result.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"


def render_csv(violations: Iterable[ViolationOut]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for v in violations:
        row = v.model_dump()
        row["allowed_values"] = "|".join(v.allowed_values) if v.allowed_values else ""
        # Tag values come from the cloud: neutralize spreadsheet formulas (=, +, -, @ at the start).
        writer.writerow([_csv_safe("" if row[c] is None else str(row[c])) for c in CSV_COLUMNS])
    return out.getvalue()


def _csv_safe(value: str) -> str:
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def escape_markdown(value: object) -> str:
    """``value`` as inert Markdown text: one line, no table separators, code spans, links, emphasis or
    HTML (tags and entities)."""
    # Cloud tag values are data: escape table separators and markup so they cannot restructure the report.
    text = "" if value is None else str(value)
    text = text.replace("\\", "\\\\").replace("\n", " ").replace("\r", " ")
    # Markdown renderers pass raw HTML and entities through: a tag value like <script> must stay text.
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\g<0>", text)


# Table separators, code spans, links and images, emphasis and strike-through. An underscore inside a
# word never starts emphasis, so ARNs and names like orders_service stay readable.
_MD_SPECIAL = re.compile(r"[|`\[\]*~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


_md = escape_markdown


def render_markdown(result: ScanResult, top: int = 25) -> str:
    lines = [f"# Tag compliance scan {result.scan_id}", ""]
    score = "n/a" if result.compliance_score is None else f"{result.compliance_score:.1%}"
    lines += [f"- Status: **{result.status}** (data quality: {result.data_quality.status})",
              f"- Compliance score: **{score}** ({result.compliant_resources} of {result.in_scope_resources} "
              f"in-scope resources; {result.total_resources} resources scanned)",
              f"- Violations: {result.violations_total}", f"- Policy version: `{result.policy_version[:12]}`", ""]
    if result.data_quality.failed_shards:
        lines += ["## Incomplete coverage", ""]
        lines += [f"- {_md(f.shard)}: {_md(f.error)}" for f in result.data_quality.failed_shards]
        lines.append("")
    for title, table in (("By account", result.breakdowns.by_account),
                         ("By resource type", result.breakdowns.by_resource_type)):
        lines += [f"## {title}", "", "| | resources | in scope | compliant | score |", "|---|---:|---:|---:|---:|"]
        for key, e in sorted(table.items(), key=lambda kv: kv[1].compliance_score):
            lines.append(f"| {_md(key)} | {e.total} | {e.in_scope} | {e.compliant} | {e.compliance_score:.1%} |")
        lines.append("")
    lines += ["## Violations by tag", "", "| tag | violations | resources |", "|---|---:|---:|"]
    for tag, t in sorted(result.breakdowns.by_tag.items(), key=lambda kv: -kv[1].violations):
        lines.append(f"| {_md(tag)} | {t.violations} | {t.resources} |")
    lines += ["", f"## Top violations (first {min(top, len(result.violations))} of {result.violations_total})", "",
              "| resource | tag | problem | suggestion |", "|---|---|---|---|"]
    for v in result.violations[:top]:
        lines.append(f"| {_md(v.resource_arn)} | {_md(v.tag_name)} | {_md(v.message)} | {_md(v.suggestion)} |")
    if result.data_quality.notes:
        lines += ["", "## Notes", ""] + [f"- {_md(n)}" for n in result.data_quality.notes]
    return "\n".join(lines) + "\n"
