"""REST: violation exports of finished scans (CSV or JSON), streamed as a file download.

Thin over ``services.exports``, as the MCP tool and the CLI are. The request is checked in full before
the first byte is sent, so a bad column or filter is a 4xx JSON error naming the field and the fix;
the rows are then streamed page by page, never held in memory as a whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from api.http.routes import RuntimeDep
from services import exports

exports_router = APIRouter(prefix="/v1/exports", tags=["exports"])

_LIST = "Comma-separated or repeated."

_RESPONSES: dict[int | str, dict[str, Any]] = {200: {
    "description": "The export as a file (Content-Disposition attachment), streamed.",
    "content": {media: {} for media, _ext in exports.FORMATS.values()}}}


@exports_router.get("/violations", response_class=StreamingResponse, responses=_RESPONSES)
def export_violations(
    rt: RuntimeDep,
    scan_id: Annotated[str | None, Query(description="The scan to export; omit for the latest finished scan.")] = None,
    format: Annotated[Literal["csv", "json"], Query(description="csv (every cell filled, spreadsheet-safe) or json.")
                      ] = "csv",
    columns: Annotated[list[str] | None, Query(description=(
        "Columns in order, from: " + ", ".join(exports.COLUMNS) + ". " + _LIST + " Omit for "
        + ", ".join(exports.DEFAULT_COLUMNS) + "."))] = None,
    severity: Annotated[str | None, Query(description=(
        "all, errors_only or warnings_only (also error, warning)."))] = None,
    resource_types: Annotated[list[str] | None, Query(description="Only these types, e.g. ec2:instance. " + _LIST)
                              ] = None,
    accounts: Annotated[list[str] | None, Query(description="Only these account ids. " + _LIST)] = None,
    regions: Annotated[list[str] | None, Query(description="Only these regions. " + _LIST)] = None,
    tag_names: Annotated[list[str] | None, Query(description="Only violations of these tag keys. " + _LIST)] = None,
) -> StreamingResponse:
    """Every violation of a finished scan (errors first, then by ARN), one per CSV line or JSON object."""
    spec = exports.prepare(rt, scan_id=scan_id, format=format, columns=columns, severity=severity,
                           resource_types=resource_types, accounts=accounts, regions=regions, tag_names=tag_names)

    def body() -> Iterator[bytes]:
        for chunk in exports.stream(rt, spec):
            yield chunk.encode("utf-8")

    headers = {"Content-Disposition": f'attachment; filename="{spec.filename}"', "X-Content-Type-Options": "nosniff",
               "X-Export-Scan-Id": spec.scan_id, "X-Export-Row-Count": str(spec.row_count),
               "Cache-Control": "no-store"}
    # Starlette adds "; charset=utf-8" to text/* media types.
    return StreamingResponse(body(), media_type=spec.media_type, headers=headers)
