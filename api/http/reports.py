"""REST: compliance reports of finished scans, rendered as a file (json, csv, markdown or html).

Thin over ``services.report_formats``, as the MCP tool is. Errors are the project's AppErrors, which
the gateway maps to 4xx JSON naming the field and the fix.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.http.routes import RuntimeDep
from services import report_formats

reports_router = APIRouter(prefix="/v1/reports", tags=["reports"])

FormatQuery = Annotated[str, Query(
    description="Report format: " + ", ".join(f"{f.name} ({f.description})" for f in report_formats.FORMATS.values()),
    json_schema_extra={"enum": report_formats.format_names()})]
TypesQuery = Annotated[list[str] | None, Query(
    description="Only these resource types (comma-separated or repeated), e.g. ec2:instance,s3:bucket. "
                "Omit for every type of the scan.")]
RecommendationsQuery = Annotated[bool, Query(description="Include ranked recommendations with their score impact.")]
DownloadQuery = Annotated[bool, Query(description="Ask the browser to save the file instead of showing it.")]

# The HTML report needs no script and loads nothing; served from the API's origin it must not be
# able to either, even if a cloud string ever slipped past escaping.
_HTML_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

_RESPONSES: dict[int | str, dict[str, Any]] = {200: {
    "description": "The rendered report, with a Content-Disposition file name.",
    "content": {f.media_type: {} for f in report_formats.FORMATS.values()}}}


def _types(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    return [t.strip() for value in values for t in value.split(",")]


def _respond(rendered: report_formats.RenderedReport, download: bool) -> Response:
    fmt = rendered.format
    disposition = "attachment" if download else (fmt.disposition or "inline")
    headers = {"Content-Disposition": f'{disposition}; filename="{rendered.filename}"',
               "X-Content-Type-Options": "nosniff", "X-Report-Scan-Id": rendered.report.scan_id,
               "Cache-Control": "no-store"}
    if fmt.name == "html":
        headers["Content-Security-Policy"] = _HTML_CSP
    # Starlette adds "; charset=utf-8" to text/* media types.
    return Response(content=rendered.text.encode("utf-8"), media_type=fmt.media_type, headers=headers)


@reports_router.get("/latest", response_class=Response, responses=_RESPONSES)
def latest_report(rt: RuntimeDep, format: FormatQuery = "json", resource_types: TypesQuery = None,
                  include_recommendations: RecommendationsQuery = True, download: DownloadQuery = False) -> Response:
    """The report of the latest finished scan (status succeeded or partial)."""
    return _respond(report_formats.generate(rt, format=format, resource_types=_types(resource_types),
                                            include_recommendations=include_recommendations), download)


@reports_router.get("/{scan_id}", response_class=Response, responses=_RESPONSES)
def scan_report(rt: RuntimeDep, scan_id: str, format: FormatQuery = "json", resource_types: TypesQuery = None,
                include_recommendations: RecommendationsQuery = True, download: DownloadQuery = False) -> Response:
    """The report of one finished scan: summary, score trend, breakdowns, top offenders, recommendations
    (json, markdown, html) or every violation (csv)."""
    return _respond(report_formats.generate(rt, format=format, scan_id=scan_id, resource_types=_types(resource_types),
                                            include_recommendations=include_recommendations), download)
