"""Report formats: a registry (name -> renderer) and the json, csv, markdown and html renderers.

A new format is one decorated function; the MCP tool, the REST route and the CLI list and validate
formats from this registry, so they all gain it at once.

The HTML report is one self-contained file: inline CSS and inline SVG charts drawn here, no script,
no font, no image and no URL of any kind, and a Content-Security-Policy that forbids loading
anything, so it renders the same offline, in a mail attachment or behind a proxy. Every string that
comes from the cloud (tag keys and values, names, ids) is escaped: tag values are data, never markup.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from services import reports, scans
from services.errors import InvalidInput
from services.report_builder import ComplianceReport, CostGap, GroupStats, ScoreTrend, build_report
from services.runtime import Runtime
from services.schemas import ViolationFilters, ViolationOut

#: The colours of the HTML charts (bars and lines); nothing else in the page uses them, so a
#: screenshot test can find each chart by its colour.
CHART_COLOURS: dict[str, str] = {
    "compliant": "#2e7d32",
    "non_compliant": "#c62828",
    "trend": "#1565c0",
    "offenders": "#ef6c00",
    "cost": "#6a1b9a",
}
_MUTED = "#9e9e9e"
# How many bars a chart draws; the tables under the charts list the rest.
_CHART_BARS = 15
# Bar labels are cut to this many characters: about 200 px at the charts' 12 px font, inside the label column.
_LABEL_CHARS = 28


# ------------------------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class ReportSource:
    """What a renderer reads: the report, and every violation in its scope (read lazily, page by page)."""

    report: ComplianceReport
    violations: Callable[[], Iterable[ViolationOut]]


Renderer = Callable[[ReportSource], str]


@dataclass(frozen=True)
class ReportFormat:
    """A registered format: its public name, HTTP media type, file extension and renderer."""

    name: str
    media_type: str
    extension: str
    description: str
    #: Content-Disposition for HTTP downloads: "attachment", "inline" (with a file name) or None.
    disposition: str | None
    render: Renderer


FORMATS: dict[str, ReportFormat] = {}


def report_format(name: str, *, media_type: str, extension: str, description: str,
                  disposition: str | None = None) -> Callable[[Renderer], Renderer]:
    """Register ``fn`` as the renderer of format ``name`` (the name users pass)."""

    def register(fn: Renderer) -> Renderer:
        if name in FORMATS:
            raise ValueError(f"report format {name!r} is registered twice")
        FORMATS[name] = ReportFormat(name=name, media_type=media_type, extension=extension,
                                     description=description, disposition=disposition, render=fn)
        return fn

    return register


def format_names() -> list[str]:
    """The registered format names, in registration order."""
    return list(FORMATS)


def get_format(name: str, *, field: str = "format") -> ReportFormat:
    """The format called ``name``; an InvalidInput naming ``field`` and the valid names otherwise."""
    fmt = FORMATS.get((name or "").strip().lower())
    if fmt is None:
        raise InvalidInput(f"unknown report format '{name}'", field=field,
                           fix="use one of: " + ", ".join(FORMATS))
    return fmt


@dataclass(frozen=True)
class RenderedReport:
    """A rendered report and what a front door needs to deliver it."""

    format: ReportFormat
    report: ComplianceReport
    text: str

    @property
    def filename(self) -> str:
        return f"compliance-report-{self.report.scan_id}.{self.format.extension}"

    @property
    def size_bytes(self) -> int:
        return len(self.text.encode("utf-8"))


def generate(rt: Runtime, *, format: str, scan_id: str | None = None, resource_types: Sequence[str] | None = None,
             include_recommendations: bool = True) -> RenderedReport:
    """Build the report of ``scan_id`` (default: the latest finished scan) and render it as ``format``."""
    fmt = get_format(format)  # before any database work: a typo fails fast
    report = build_report(rt, scan_id=scan_id, resource_types=resource_types,
                          include_recommendations=include_recommendations)

    def violations() -> Iterable[ViolationOut]:
        types = report.scope.resource_types
        if types is None:
            yield from scans.iter_violations(rt, report.scan_id)
            return
        for rtype in types:
            yield from scans.iter_violations(rt, report.scan_id, ViolationFilters(resource_type=rtype))

    return RenderedReport(format=fmt, report=report, text=fmt.render(ReportSource(report, violations)))


# ---------------------------------------------------------------------------------------------- json

@report_format("json", media_type="application/json", extension="json",
               description="the report model (summary, trend, breakdowns, offenders, recommendations)")
def render_json(source: ReportSource) -> str:
    """The report model as JSON (its violations are a sample; the csv format lists them all)."""
    return json.dumps(source.report.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"


# ----------------------------------------------------------------------------------------------- csv

@report_format("csv", media_type="text/csv", extension="csv", disposition="attachment",
               description="every violation in the report's scope, one per row")
def render_csv(source: ReportSource) -> str:
    """Every violation of the report's scope, with the columns of ``services.reports.CSV_COLUMNS``."""
    return reports.render_csv(source.violations())


# ------------------------------------------------------------------------------------------ markdown

def _n(count: int, noun: str = "resource") -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _pct(score: float) -> str:
    return f"{score:.1%}"


def _when(dt: datetime | None, *, seconds: bool = False) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC") if dt else "n/a"


def _scope_text(value: object) -> str:
    if value is None:
        return "configured default"
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


@report_format("markdown", media_type="text/markdown", extension="md",
               description="a readable report for chat, tickets and wikis")
def render_markdown(source: ReportSource) -> str:
    """The report as Markdown; cloud strings are escaped so they cannot restructure it."""
    r, md = source.report, reports.escape_markdown
    s = r.summary
    lines = [f"# Tag compliance report: scan {r.scan_id}", "",
             f"- Compliance score: **{_pct(s.compliance_score)}** ({s.compliant_resources} of {s.in_scope_resources} "
             f"in-scope resources compliant; {s.non_compliant_resources} non-compliant; {s.total_resources} scanned)",
             f"- Violations: {s.violations_total} ({s.errors} errors, {s.warnings} warnings)",
             f"- Scan: {r.scan_status}, finished {_when(r.scan_finished_at)}; data quality: "
             f"**{r.data_quality.status}**",
             f"- Scope: accounts {md(_scope_text(r.scope.accounts))}; regions {md(_scope_text(r.scope.regions))}; "
             f"resource types {md(_scope_text(r.scope.resource_types or r.scope.scan_resource_types))}",
             f"- Policy version: `{r.policy_version[:12]}`; generated {_when(r.generated_at)}", ""]
    if r.data_quality.failed_shards:
        lines += ["## Incomplete coverage", "", "These shards failed; the numbers cover only the rest.", ""]
        lines += [f"- {md(f.shard)}: {md(f.error)}" for f in r.data_quality.failed_shards]
        lines.append("")
    lines += _md_trend(r.trend)
    for title, groups in (("By account", r.by_account), ("By resource type", r.by_resource_type),
                          ("By region", r.by_region)):
        lines += [f"## {title}", "", "| | resources | in scope | compliant | non-compliant | violations | score |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {md(g.key)} | {g.total} | {g.in_scope} | {g.compliant} | {g.non_compliant} | {g.violations} | "
                  f"{_pct(g.compliance_score)} |" for g in groups]
        lines.append("")
    lines += ["## Violations by tag", "", "| tag | violations | resources | kinds |", "|---|---:|---:|---|"]
    lines += [f"| {md(t.tag_name)} | {t.violations} | {t.resources} | "
              f"{md(', '.join(f'{k} {n}' for k, n in sorted(t.by_violation_type.items())))} |" for t in r.by_tag]
    lines += ["", "## Top offenders", "", "### Resources with the most violations", "",
              "| resource | type | account | region | violations | problems |", "|---|---|---|---|---:|---|"]
    lines += [f"| {md(o.name or o.resource_id)}<br>{md(o.resource_arn)} | {md(o.resource_type)} | {md(o.account_id)} "
              f"| {md(o.region)} | {o.violations} | {md('; '.join(o.problems))} |" for o in r.top_offenders.resources]
    for title, groups in (("Resource types", r.top_offenders.resource_types),
                          ("Accounts", r.top_offenders.accounts)):
        lines += ["", f"### {title} with the most non-compliant resources", "",
                  "| | non-compliant | in scope | score |", "|---|---:|---:|---:|"]
        lines += [f"| {md(g.key)} | {g.non_compliant} | {g.in_scope} | {_pct(g.compliance_score)} |" for g in groups]
    lines += ["", "## Cost gap", ""]
    lines += _md_cost(r.cost) if r.cost is not None else [md(r.cost_note or "cost data not available")]
    lines.append("")
    if r.recommendations is not None:
        lines += ["## Recommendations", "",
                  "Ranked by score points: the resources that become compliant with this one fix, over the "
                  f"{s.in_scope_resources} in-scope resources.", ""]
        for rec in r.recommendations:
            dollars = f"${rec.estimated_dollars:,.2f}" if rec.estimated_dollars is not None \
                else f"n/a ({md(rec.dollar_impact_basis)})"
            lines.append(f"{rec.rank}. **{md(rec.title)}**: {md(rec.action)}. Impact: "
                         f"**+{rec.estimated_score_points:.2f} points** ({_n(rec.resources_becoming_compliant)} "
                         "become compliant; score "
                         f"{_pct(s.compliance_score)} -> {_pct(rec.compliance_score_after)}); dollars: {dollars}.")
            if rec.example_suggestion:
                lines.append(f"   Example fix: {md(rec.example_suggestion)}.")
        if not r.recommendations:
            lines.append("Nothing to fix: every in-scope resource is compliant.")
        lines.append("")
    lines += ["## Sample violations", "", "| resource | tag | severity | problem | suggestion |",
              "|---|---|---|---|---|"]
    lines += [f"| {md(v.resource_arn)} | {md(v.tag_name)} | {md(v.severity)} | {md(v.message)} | {md(v.suggestion)} |"
              for v in r.sample_violations]
    lines += ["", f"Every violation: the csv format of this report, or GET /v1/scans/{r.scan_id}/violations."]
    if r.data_quality.notes:
        lines += ["", "## Notes", ""] + [f"- {md(n)}" for n in r.data_quality.notes]
    return "\n".join(lines) + "\n"


def _md_trend(trend: ScoreTrend) -> list[str]:
    lines = ["## Score trend", "", "| finished | score | scan | status | trigger |", "|---|---:|---|---|---|"]
    lines += [f"| {_when(p.finished_at)} | {_pct(p.compliance_score)} | {p.scan_id} | {p.status} | {p.trigger} |"
              for p in trend.points]
    if trend.note:
        lines += ["", trend.note[:1].upper() + trend.note[1:] + "."]
    if trend.other_scope_scans:
        lines += ["", f"{trend.other_scope_scans} earlier scan(s) with another scope are not part of this trend."]
    return [*lines, ""]


def _md_cost(cost: CostGap) -> list[str]:
    md = reports.escape_markdown
    period = f"{cost.period_start} to {cost.period_end}" if cost.period_start else "the loaded period"
    lines = [f"Unattributed spend: **{cost.unattributed_cost:,.2f} {md(cost.currency)}** of "
             f"{cost.total_cost:,.2f} over {period} (source: {md(cost.source)}).", "",
             "| | total | unattributed |", "|---|---:|---:|"]
    lines += [f"| {md(e.key)} | {e.total_cost:,.2f} | {e.unattributed_cost:,.2f} |" for e in cost.by_group]
    return lines


# ---------------------------------------------------------------------------------------------- html

def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _short(text: str, limit: int = _LABEL_CHARS) -> str:
    # Cut before escaping so an entity is never split.
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def _svg(chart_id: str, width: int, height: int, title: str, desc: str, body: list[str]) -> str:
    # No xmlns attribute: inline SVG in HTML needs none, and the page carries no URL at all.
    return (f'<svg class="chart" id="{chart_id}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'role="img" aria-labelledby="{chart_id}-title {chart_id}-desc">'
            f'<title id="{chart_id}-title">{_e(title)}</title><desc id="{chart_id}-desc">{_e(desc)}</desc>'
            + "".join(body) + "</svg>")


def _text(x: float, y: float, text: str, *, anchor: str = "start", cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{klass}>{_e(text)}</text>'


def _bar_rows(rows: list[tuple[str, list[tuple[float, str]], str]], *, chart_id: str, title: str, desc: str,
              width: int = 560) -> str:
    """Horizontal bars, one row per (label, [(value, colour), ...] stacked, right-hand text)."""
    label_w, value_w, row_h, top = 230, 120, 26, 8
    bar_w = width - label_w - value_w
    top_value = max((sum(v for v, _c in segs) for _l, segs, _t in rows), default=0.0) or 1.0
    height = top + row_h * max(1, len(rows)) + 8
    body: list[str] = []
    for i, (label, segments, right) in enumerate(rows):
        y = top + i * row_h
        body.append(_text(label_w - 8, y + 16, _short(label), anchor="end", cls="label"))
        x = float(label_w)
        for value, colour in segments:
            w = bar_w * value / top_value
            if w > 0:
                body.append(f'<rect x="{x:.1f}" y="{y + 4}" width="{max(w, 1.0):.1f}" height="{row_h - 8}" '
                            f'fill="{colour}"/>')
            x += w
        body.append(_text(x + 6, y + 16, right, cls="value"))
    if not rows:
        body.append(_text(width / 2, top + 16, "nothing to show", anchor="middle", cls="muted"))
    return _svg(chart_id, width, height, title, desc, body)


def _group_chart(groups: list[GroupStats], *, chart_id: str, what: str) -> str:
    shown = [g for g in groups if g.in_scope > 0][:_CHART_BARS]
    rows = [(g.key, [(float(g.compliant), CHART_COLOURS["compliant"]),
                     (float(g.non_compliant), CHART_COLOURS["non_compliant"])],
             f"{g.compliance_score:.0%} ({g.compliant}/{g.in_scope})") for g in shown]
    more = len([g for g in groups if g.in_scope > 0]) - len(shown)
    desc = (f"Compliant (green) and non-compliant (red) in-scope resources per {what}, worst score first"
            + (f"; {more} more in the table below" if more > 0 else "") + ". "
            + "; ".join(f"{g.key}: {g.compliance_score:.0%}, {g.non_compliant} non-compliant of {g.in_scope}"
                        for g in shown))
    return _bar_rows(rows, chart_id=chart_id, title=f"Compliance by {what}", desc=desc)


def _trend_chart(trend: ScoreTrend, width: int = 1100, height: int = 260) -> str:
    left, right, top, bottom = 56, 24, 18, 46
    pw, ph = width - left - right, height - top - bottom
    body: list[str] = []
    for pct in (0, 25, 50, 75, 100):
        y = top + ph * (1 - pct / 100)
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" class="grid"/>')
        body.append(_text(left - 8, y + 4, f"{pct}%", anchor="end", cls="axis"))
    points = trend.points
    times = [p.finished_at.timestamp() for p in points]
    t0, t1 = (min(times), max(times)) if times else (0.0, 0.0)
    coords = []
    for p, t in zip(points, times, strict=True):
        x = left + (pw / 2 if t1 == t0 else pw * (t - t0) / (t1 - t0))
        coords.append((x, top + ph * (1 - p.compliance_score)))
    colour = CHART_COLOURS["trend"]
    if len(coords) > 1:
        body.append(f'<polyline points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in coords)}" fill="none" '
                    f'stroke="{colour}" stroke-width="3" stroke-linejoin="round"/>')
    for (x, y), p in zip(coords, points, strict=True):
        body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colour}"><title>'
                    f'{_e(_when(p.finished_at))}: {_e(_pct(p.compliance_score))}</title></circle>')
    if points:
        # Scans minutes apart would get the same axis label: show seconds when the span is short.
        short = t1 - t0 < 3600
        body.append(_text(left, height - 16, _when(points[0].finished_at, seconds=short), cls="axis"))
        if len(points) > 1:
            body.append(_text(width - right, height - 16, _when(points[-1].finished_at, seconds=short),
                              anchor="end", cls="axis"))
        last_x, last_y = coords[-1]
        body.append(_text(min(last_x + 10, width - right - 40), max(last_y - 10, top + 12),
                          _pct(points[-1].compliance_score), cls="value"))
    if len(points) <= 1:
        body.append(_text(left + pw / 2, top + ph / 2 - 18, "Only one finished scan so far: the trend starts here.",
                          anchor="middle", cls="note"))
    desc = ("Compliance score of each finished scan with this scope, oldest first: "
            + "; ".join(f"{_when(p.finished_at)} {_pct(p.compliance_score)}" for p in points) + ".")
    return _svg("chart-trend", width, height, "Compliance score trend", desc, body)


def _offender_chart(report: ComplianceReport) -> str:
    offenders = report.top_offenders.resources
    rows = [(o.name or o.resource_id, [(float(o.violations), CHART_COLOURS["offenders"])],
             _n(o.violations, "violation")) for o in offenders]
    desc = "Resources with the most violations: " + "; ".join(
        f"{o.name or o.resource_id} ({o.resource_type}, {o.account_id}): {o.violations}" for o in offenders) + "."
    return _bar_rows(rows, chart_id="chart-offenders", title="Top offenders: resources with the most violations",
                     desc=desc)


def _cost_chart(cost: CostGap) -> str:
    rows = [(e.key, [(e.unattributed_cost, CHART_COLOURS["cost"]), (max(0.0, e.total_cost - e.unattributed_cost),
                                                                      _MUTED)],
             f"{e.unattributed_cost:,.0f} of {e.total_cost:,.0f} {cost.currency}") for e in cost.by_group[:_CHART_BARS]]
    desc = (f"Unattributed spend (purple) and attributed spend (grey) per group, in {cost.currency}: "
            + "; ".join(f"{e.key}: {e.unattributed_cost:,.2f} of {e.total_cost:,.2f}" for e in cost.by_group) + ".")
    return _bar_rows(rows, chart_id="chart-cost", title="Cost gap: spend no tag attributes", desc=desc)


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, numeric: Sequence[int] = (),
           caption: str | None = None) -> str:
    num = ' class="num"'
    head = "".join(f'<th scope="col"{num if i in numeric else ""}>{_e(h)}</th>' for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f"<td{num if i in numeric else ''}>{_e(c)}</td>" for i, c in enumerate(row))
                   + "</tr>" for row in rows)
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    return f'<div class="table-wrap"><table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _group_table(groups: list[GroupStats], first: str, caption: str) -> str:
    return _table([first, "resources", "in scope", "compliant", "non-compliant", "violations", "score"],
                  ([g.key, g.total, g.in_scope, g.compliant, g.non_compliant, g.violations, _pct(g.compliance_score)]
                   for g in groups), numeric=(1, 2, 3, 4, 5, 6), caption=caption)


_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; font-family: system-ui, "DejaVu Sans", "Liberation Sans", Arial, sans-serif; color: #212121;
       background: #f5f5f5; line-height: 1.4; }
header { background: #263238; color: #fff; padding: 18px 28px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 0; color: #cfd8dc; font-size: 13px; }
main { padding: 18px 28px; max-width: 1240px; }
section { background: #fff; border: 1px solid #e0e0e0; border-radius: 6px; padding: 14px 18px; margin: 0 0 16px; }
h2 { font-size: 17px; margin: 0 0 10px; }
h3 { font-size: 14px; margin: 14px 0 6px; }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
.grid2 > section { margin: 0; min-width: 0; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; }
.card { border: 1px solid #e0e0e0; border-radius: 6px; padding: 10px 14px; min-width: 150px; }
.card .big { font-size: 26px; font-weight: 700; }
.card .small { font-size: 12px; color: #616161; }
.banner { background: #fff8e1; border: 1px solid #ffcc80; border-radius: 6px; padding: 10px 14px; margin: 0 0 16px; }
.notice { background: #eceff1; border: 1px dashed #90a4ae; border-radius: 6px; padding: 18px; font-size: 14px; }
svg.chart { max-width: 100%; height: auto; display: block; }
svg .label, svg .value, svg .axis { font-size: 12px; fill: #424242; }
svg .note { font-size: 14px; fill: #424242; font-style: italic; }
svg .muted { font-size: 13px; fill: #757575; }
svg .grid { stroke: #e0e0e0; stroke-width: 1; }
.legend { font-size: 12px; color: #616161; margin: 4px 0 8px; }
.swatch { display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 10px; vertical-align: middle; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 12px; margin: 6px 0; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
th, td { border-bottom: 1px solid #eeeeee; padding: 4px 6px; text-align: left; vertical-align: top;
         overflow-wrap: anywhere; }
th { background: #fafafa; }
.num { text-align: right; white-space: nowrap; }
ol.recs li { margin: 0 0 10px; }
.impact { font-weight: 600; }
code { font-size: 12px; }
footer { color: #757575; font-size: 12px; padding: 0 28px 24px; }
@media (max-width: 900px) { .grid2 { grid-template-columns: 1fr; } }
"""


def _legend(*items: tuple[str, str]) -> str:
    return '<p class="legend" aria-hidden="true">' + "".join(
        f'<span class="swatch" style="background:{colour}"></span>{_e(label)}' for label, colour in items) + "</p>"


@report_format("html", media_type="text/html", extension="html", disposition="inline",
               description="one self-contained page with charts (no network access needed)")
def render_html(source: ReportSource) -> str:
    """One self-contained HTML page: summary, charts (trend, by account, by type, offenders, cost gap),
    tables and recommendations."""
    r = source.report
    s = r.summary
    parts: list[str] = []
    add = parts.append
    add("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        # Nothing may load from anywhere: no script, no font, no image, no frame.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
        f"<title>Tag compliance report, scan {_e(r.scan_id)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n")
    add(f"<header><h1>Tag compliance report</h1><p>Scan {_e(r.scan_id)} ({_e(r.scan_status)}), finished "
        f"{_e(_when(r.scan_finished_at))}; policy version {_e(r.policy_version[:12])}; generated "
        f"{_e(_when(r.generated_at))}</p></header>\n<main>\n")
    if r.data_quality.status != "complete":
        failed = "".join(f"<li>{_e(f.shard)}: {_e(f.error)}</li>" for f in r.data_quality.failed_shards)
        add(f'<div class="banner" role="alert"><strong>Data quality: {_e(r.data_quality.status)}.</strong> Some '
            f"accounts, regions or types could not be read; the numbers cover only the rest."
            f"{'<ul>' + failed + '</ul>' if failed else ''}</div>\n")
    scope_types = r.scope.resource_types or r.scope.scan_resource_types
    add('<section aria-labelledby="h-summary"><h2 id="h-summary">Summary</h2><div class="cards">'
        f'<div class="card"><div class="big">{_e(_pct(s.compliance_score))}</div><div class="small">compliance score'
        f'</div></div><div class="card"><div class="big">{s.compliant_resources} / {s.in_scope_resources}</div>'
        f'<div class="small">in-scope resources compliant</div></div><div class="card"><div class="big">'
        f'{s.non_compliant_resources}</div><div class="small">non-compliant resources</div></div>'
        f'<div class="card"><div class="big">{s.violations_total}</div><div class="small">violations ({s.errors} '
        f'errors, {s.warnings} warnings)</div></div><div class="card"><div class="big">{s.total_resources}</div>'
        f'<div class="small">resources scanned</div></div></div>'
        f'<p class="small">Scope: accounts {_e(_scope_text(r.scope.accounts))}; regions '
        f'{_e(_scope_text(r.scope.regions))}; resource types {_e(_scope_text(scope_types))}.</p></section>\n')
    trend_note = f"<p>{_e(r.trend.note[:1].upper() + r.trend.note[1:])}.</p>" if r.trend.note else ""
    other = (f"<p class=\"small\">{r.trend.other_scope_scans} earlier scan(s) with another scope are not part of "
             "this trend.</p>") if r.trend.other_scope_scans else ""
    add(f'<section aria-labelledby="h-trend"><h2 id="h-trend">Score trend</h2>{_trend_chart(r.trend)}{trend_note}'
        f"{other}</section>\n")
    legend = _legend(("compliant", CHART_COLOURS["compliant"]), ("non-compliant", CHART_COLOURS["non_compliant"]))
    add('<div class="grid2">'
        f'<section aria-labelledby="h-account"><h2 id="h-account">By account</h2>{legend}'
        f'{_group_chart(r.by_account, chart_id="chart-account", what="account")}</section>'
        f'<section aria-labelledby="h-type"><h2 id="h-type">By resource type</h2>{legend}'
        f'{_group_chart(r.by_resource_type, chart_id="chart-type", what="resource type")}</section></div>\n')
    if r.cost is not None:
        cost_body = (f"<p>Unattributed spend: <strong>{r.cost.unattributed_cost:,.2f} {_e(r.cost.currency)}"
                     f"</strong> of {r.cost.total_cost:,.2f} (source: {_e(r.cost.source)}).</p>{_cost_chart(r.cost)}")
    else:
        cost_body = f'<p class="notice">{_e(r.cost_note or "cost data not available")}</p>'
    add('<div class="grid2" style="margin-top:16px">'
        f'<section aria-labelledby="h-offenders"><h2 id="h-offenders">Top offenders</h2>{_offender_chart(r)}</section>'
        f'<section aria-labelledby="h-cost"><h2 id="h-cost">Cost gap</h2>{cost_body}</section></div>\n'
        '<div style="height:16px"></div>\n')
    if r.recommendations is not None:
        add(_html_recommendations(r))
    add('<section aria-labelledby="h-tables"><h2 id="h-tables">Details</h2>')
    add(_group_table(r.by_account, "account", "By account (worst score first)"))
    add(_group_table(r.by_resource_type, "resource type", "By resource type (worst score first)"))
    add(_group_table(r.by_region, "region", "By region (worst score first)"))
    add(_table(["tag", "violations", "resources", "kinds"],
               ([t.tag_name, t.violations, t.resources, ", ".join(f"{k} {n}" for k, n in
                                                                  sorted(t.by_violation_type.items()))]
                for t in r.by_tag), numeric=(1, 2), caption="Violations by tag"))
    add(_table(["resource", "ARN", "type", "account", "region", "violations", "problems"],
               ([o.name or o.resource_id, o.resource_arn, o.resource_type, o.account_id, o.region, o.violations,
                 "; ".join(o.problems)] for o in r.top_offenders.resources), numeric=(5,),
               caption="Resources with the most violations"))
    for what, groups in (("Resource types", r.top_offenders.resource_types), ("Accounts", r.top_offenders.accounts)):
        add(_table([what[:-1].lower(), "non-compliant", "in scope", "score"],
                   ([g.key, g.non_compliant, g.in_scope, _pct(g.compliance_score)] for g in groups),
                   numeric=(1, 2, 3), caption=f"{what} with the most non-compliant resources"))
    add(_table(["resource", "tag", "severity", "current value", "problem", "suggestion"],
               ([v.resource_arn, v.tag_name, v.severity, v.current_value or "", v.message, v.suggestion or ""]
                for v in r.sample_violations),
               caption="Sample violations (every violation: the csv format of this report)"))
    add("</section>\n")
    if r.data_quality.notes:
        add('<section aria-labelledby="h-notes"><h2 id="h-notes">Notes</h2><ul>'
            + "".join(f"<li>{_e(n)}</li>" for n in r.data_quality.notes) + "</ul></section>\n")
    add(f"</main>\n<footer>finops-tag-compliance report format {r.report_version}. Scores are compliant / in-scope "
        "resources; resource types no required tag applies to are out of scope.</footer>\n</body>\n</html>\n")
    return "".join(parts)


def _html_recommendations(r: ComplianceReport) -> str:
    recs = r.recommendations or []
    items = []
    for rec in recs:
        dollars = (f"${rec.estimated_dollars:,.2f}" if rec.estimated_dollars is not None
                   else f"n/a ({rec.dollar_impact_basis})")
        types = ", ".join(f"{t} {n}" for t, n in list(rec.by_resource_type.items())[:6])
        example = f"<br>Example fix: {_e(rec.example_suggestion)}" if rec.example_suggestion else ""
        items.append(
            f"<li><strong>{_e(rec.title)}</strong>: {_e(rec.action)}.<br><span class=\"impact\">+"
            f"{rec.estimated_score_points:.2f} score points</span> ({_n(rec.resources_becoming_compliant)} "
            f"become compliant; score {_e(_pct(r.summary.compliance_score))} &rarr; "
            f"{_e(_pct(rec.compliance_score_after))}); estimated dollars: {_e(dollars)}.<br>Affected: "
            f"{_n(rec.resources_affected)} ({_e(types)}){example}</li>")
    body = f'<ol class="recs">{"".join(items)}</ol>' if items else \
        "<p>Nothing to fix: every in-scope resource is compliant.</p>"
    return (f'<section aria-labelledby="h-recs"><h2 id="h-recs">Recommendations</h2><p class="small">Ranked by '
            f"score points: the resources that become compliant with this one fix, over the "
            f"{r.summary.in_scope_resources} in-scope resources.</p>{body}</section>\n")
