"""MCP front door of compliance reports: the generate_compliance_report tool and one report resource
per format (``report://{scan_id}/report.{ext}``).

The tool's answer stays bounded whatever the estate: the report's summary, data quality and ranked
recommendations as structured fields, and the rendered text inline only when it is small. A larger
rendering (every violation in csv, the html page of a big estate) is named by an MCP resource the
client reads on demand and by the REST path that serves the same file.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.shared.uri_template import UriTemplate
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from services import report_formats
from services.errors import AppError, NotFound
from services.report_builder import Recommendation, ReportScope, ReportSummary
from services.runtime import Runtime
from services.schemas import DataQuality

T = TypeVar("T")
#: ``call(name, params, fn)`` of build_mcp_server: runs ``fn`` off the event loop, audited, with
#: AppErrors turned into ToolErrors that name the field and the fix.
Call = Callable[[str, dict[str, Any], Callable[[], T]], Awaitable[T]]

#: Rendered reports up to this size travel inside the tool answer; larger ones by reference.
INLINE_LIMIT_BYTES = 50_000
# The tool's format enum (annotations are evaluated in module scope, so it lives here).
_FORMAT_NAMES: list[str] = report_formats.format_names()
#: The scan_id segment of a report URI that means "the latest finished scan".
LATEST = "latest"

# Reads stored scan rows only: no cloud call, nothing written.
READ_REPORT = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                              open_world_hint=False)


def report_uri_template(fmt: report_formats.ReportFormat) -> str:
    """The MCP resource template of one format, e.g. ``report://{scan_id}/report.html{?...}``."""
    return f"report://{{scan_id}}/report.{fmt.extension}{{?resource_types,include_recommendations}}"


def report_uri(fmt: report_formats.ReportFormat, scan_id: str, resource_types: Sequence[str] | None,
               include_recommendations: bool) -> str:
    """The resource URI that reads exactly this report (same scan, types and recommendations)."""
    values: dict[str, str] = {"scan_id": scan_id}
    if resource_types:
        values["resource_types"] = ",".join(resource_types)
    if not include_recommendations:
        values["include_recommendations"] = "false"
    return UriTemplate.parse(report_uri_template(fmt)).expand(values)


def download_path(fmt: report_formats.ReportFormat, scan_id: str, resource_types: Sequence[str] | None,
                  include_recommendations: bool) -> str:
    """The REST path (on ``finops-tags serve``) that serves exactly this report."""
    query: dict[str, str] = {"format": fmt.name}
    if resource_types:
        query["resource_types"] = ",".join(resource_types)
    if not include_recommendations:
        query["include_recommendations"] = "false"
    return f"/v1/reports/{scan_id}?{urlencode(query, safe=':,')}"


class ReportAnswer(BaseModel):
    """A generated compliance report: its headline numbers, and the rendered file inline or by reference."""

    scan_id: str = Field(description="The scan the report describes.")
    scan_status: str
    generated_at: datetime
    format: str = Field(description="json, csv, markdown or html.")
    media_type: str
    filename: str = Field(description="A file name for saving the rendered report.")
    size_bytes: int = Field(description="Size of the rendered report (UTF-8).")
    inline: bool = Field(description="True when content holds the whole rendered report.")
    content: str | None = Field(description=(
        f"The rendered report when it is at most {INLINE_LIMIT_BYTES:,} bytes; null otherwise (read resource_uri)."))
    resource_uri: str = Field(description="MCP resource with the full rendered report: read it with resources/read.")
    download_path: str = Field(description=(
        "The same report over HTTP: GET this path on the gateway (finops-tags serve), e.g. to hand a person a file."))
    summary: ReportSummary
    scope: ReportScope
    data_quality: DataQuality
    recommendations: list[Recommendation] | None = Field(description=(
        "Ranked fixes with their exact score impact; null when include_recommendations is false."))
    cost_note: str | None = Field(description="Why the report has no dollar figures, and how to get them.")
    note: str | None = None


def _answer(rendered: report_formats.RenderedReport, include_recommendations: bool) -> ReportAnswer:
    r, fmt = rendered.report, rendered.format
    size = rendered.size_bytes
    inline = size <= INLINE_LIMIT_BYTES
    types = r.scope.resource_types  # normalized: None for every type of the scan
    uri = report_uri(fmt, r.scan_id, types, include_recommendations)
    note = None if inline else (
        f"The {fmt.name} report is {size:,} bytes, over the {INLINE_LIMIT_BYTES:,}-byte inline limit: read "
        f"{uri} with resources/read, or GET {download_path(fmt, r.scan_id, types, include_recommendations)} on the "
        "HTTP gateway. The summary and recommendations above are the report's headline.")
    return ReportAnswer(
        scan_id=r.scan_id, scan_status=r.scan_status, generated_at=r.generated_at, format=fmt.name,
        media_type=fmt.media_type, filename=rendered.filename, size_bytes=size, inline=inline,
        content=rendered.text if inline else None, resource_uri=uri,
        download_path=download_path(fmt, r.scan_id, types, include_recommendations),
        summary=r.summary, scope=r.scope, data_quality=r.data_quality, recommendations=r.recommendations,
        cost_note=r.cost_note, note=note)


def _split_types(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [t.strip() for t in value.split(",") if t.strip()] or None


def register_report_tools(mcp: MCPServer, runtime: Callable[[], Runtime], principal: str, call: Call[Any]) -> None:
    """Add generate_compliance_report and the report resources to ``mcp`` (see build_mcp_server)."""
    # Imported here: server.py imports this module, so a module-level import would be circular.
    from api.mcp.server import _tool

    @_tool(mcp, READ_REPORT)
    async def generate_compliance_report(
        resource_types: Annotated[list[str] | None, Field(description=(
            "Report only on these resource types, e.g. ['ec2:instance', 's3:bucket'] (every count, the score, the "
            "trend and the recommendations are then computed over them). Omit for every type of the scan."))] = None,
        format: Annotated[str, Field(json_schema_extra={"enum": _FORMAT_NAMES}, description=(
            "json (the report model), csv (every violation, one per row), markdown (readable in chat) or html "
            "(one self-contained page with charts, to forward)."))] = "json",
        include_recommendations: Annotated[bool, Field(description=(
            "Include ranked fixes with their exact score impact (points gained when the fix is made)."))] = True,
        scan_id: Annotated[str | None, Field(description=(
            "The finished scan to report on (from check_tag_compliance or list_scans). Omit for the latest "
            "finished scan."))] = None,
    ) -> ReportAnswer:
        """Compliance report of a finished scan: score and counts, score trend over earlier scans of the same
        scope, breakdowns by account, region, resource type and tag, top offenders, and ranked recommendations
        with their score impact, rendered as json, csv, markdown or html. Reads stored results (run
        check_tag_compliance first). The rendered report is inline when small (content); otherwise read
        resource_uri or fetch download_path. The cost gap needs FOCUS cost data and is not part of it yet."""
        params = {"resource_types": resource_types, "format": format,
                  "include_recommendations": include_recommendations, "scan_id": scan_id}

        def run() -> ReportAnswer:
            rendered = report_formats.generate(runtime(), format=format, scan_id=scan_id,
                                               resource_types=resource_types,
                                               include_recommendations=include_recommendations)
            return _answer(rendered, include_recommendations)

        answer: ReportAnswer = await call("generate_compliance_report", params, run)
        return answer

    for fmt in report_formats.FORMATS.values():
        _register_report_resource(mcp, runtime, fmt)


def _register_report_resource(mcp: MCPServer, runtime: Callable[[], Runtime],
                              fmt: report_formats.ReportFormat) -> None:
    def read_report(scan_id: str, resource_types: str | None = None, include_recommendations: bool = True) -> str:
        try:
            rendered = report_formats.generate(runtime(), format=fmt.name,
                                               scan_id=None if scan_id == LATEST else scan_id,
                                               resource_types=_split_types(resource_types),
                                               include_recommendations=include_recommendations)
        except NotFound as exc:
            # Not a crash: without this the SDK logs a traceback and the client reads only
            # "Error creating resource from template".
            raise ResourceNotFoundError(str(exc)) from None
        except AppError as exc:
            raise ResourceError(str(exc)) from None
        return rendered.text

    mcp.resource(report_uri_template(fmt), name=f"compliance_report_{fmt.name}",
                 title=f"Compliance report ({fmt.name})", mime_type=fmt.media_type,
                 description=inspect.cleandoc(f"""
                     The compliance report of a scan as {fmt.name}: {fmt.description}. scan_id is a scan id or
                     '{LATEST}' (the latest finished scan); optional resource_types (comma-separated) and
                     include_recommendations=false narrow it as the generate_compliance_report tool does."""),
                 )(read_report)
