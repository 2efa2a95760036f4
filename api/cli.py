"""The ``finops-tags`` command line. Exit codes: 0 done, 1 runtime failure, 2 bad usage or input,
3 compliance score under ``--fail-under``. Progress goes to stderr, results to stdout or ``--output``."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from api.apikey_cli import register_apikey_commands
from api.schedule_cli import register_schedule_commands
from services.config import Settings
from services.errors import AppError, InvalidInput
from services.schemas import TERMINAL_STATUSES, ScanRequest, ScanResult

app = typer.Typer(help="Tag compliance across a cloud estate.", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)
policy_app = typer.Typer(help="Inspect and validate tagging policies.", no_args_is_help=True)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
app.add_typer(db_app, name="db")

err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


def handle_errors(fn: F) -> F:
    """Turn AppErrors into a one-line message and the documented exit code; never a stack trace."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AppError as exc:
            err.print(f"[bold red]error[/]: {exc}", highlight=False, markup=True)
            if isinstance(exc.details, list):
                for problem in exc.details[:50]:
                    if isinstance(problem, dict) and "location" in problem:
                        err.print(f"  - {problem['location']}: {problem['message']}", highlight=False, markup=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        raise InvalidInput(f"invalid configuration: {exc}", field="environment",
                           fix="correct the FINOPS_* / DATABASE_URL / CELERY_BROKER_URL variables") from None


def _runtime(settings: Settings) -> Any:
    from api.context import get_runtime

    return get_runtime(settings)


def _policy_path(policy: Path | None) -> Path | None:
    if policy is None:
        return None
    if not policy.is_file():
        raise InvalidInput(f"policy file '{policy}' does not exist", field="--policy",
                           fix="pass the path of a tagging policy JSON file")
    return policy.resolve()


def _request(accounts: str | None, regions: str | None, resource_types: str | None) -> ScanRequest:
    from pydantic import ValidationError

    try:
        return ScanRequest(accounts=accounts, regions=regions, resource_types=resource_types)  # type: ignore[arg-type]
    except ValidationError as exc:
        e = exc.errors()[0]
        raise InvalidInput(str(e["msg"]).removeprefix("Value error, "), field=f"--{str(e['loc'][0]).replace('_', '-')}",
                           fix="see finops-tags scan --help") from None


def wait_with_progress(rt: Any, scan_id: str, *, timeout: float, quiet: bool = False) -> ScanResult:
    """Wait for the scan, drawing a progress bar on stderr, until it ends or ``timeout`` passes."""
    import anyio

    from services import scans
    from services.scan_waiting import wait_for_scan

    with Progress(TextColumn("[bold]scanning[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("shards"),
                  TextColumn("{task.fields[found]} resources"), TimeElapsedColumn(), console=err,
                  disable=quiet or not err.is_terminal, transient=True) as bar:
        task = bar.add_task("scan", total=None, found=0)

        async def show(p: scans.ScanProbe) -> None:
            bar.update(task, total=p.shards_total or None, completed=p.shards_done, found=p.resources_found)

        last = anyio.run(lambda: wait_for_scan(rt, scan_id, timeout, on_progress=show))
    if last.status not in TERMINAL_STATUSES:
        raise AppError(f"scan {scan_id} still {last.status} after {timeout:.0f} s "
                       f"({last.shards_done}/{last.shards_total} shards)",
                       fix=f"read it later: GET /v1/scans/{scan_id}, or raise --timeout")
    return scans.get_scan(rt, scan_id, violations_limit=0)


def _write_output(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    # Write beside the target and rename: a reader never sees half a report.
    output = output.resolve()
    if not output.parent.is_dir():
        raise InvalidInput(f"folder '{output.parent}' does not exist", field="--output",
                           fix="create the folder or choose another path")
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, output)
    err.print(f"wrote {output}")


def render_result(rt: Any, result: ScanResult, fmt: OutputFormat, output: Path | None) -> None:
    from services import reports, scans

    if fmt is OutputFormat.json:
        full = reports.with_all_violations(result, scans.iter_violations(rt, result.scan_id))
        _write_output(reports.render_json(full), output)
    elif fmt is OutputFormat.csv:
        _write_output(reports.render_csv(scans.iter_violations(rt, result.scan_id)), output)
    elif fmt is OutputFormat.markdown:
        page = scans.get_scan(rt, result.scan_id, violations_limit=25)
        _write_output(reports.render_markdown(page), output)
    else:
        page = scans.get_scan(rt, result.scan_id, violations_limit=15)
        page = page.model_copy(update={"violations": scans.representative_violations(rt, result.scan_id, 15)})
        if output is not None:
            _write_output(reports.render_markdown(page), output)
        else:
            print_summary(page, Console())


def print_summary(result: ScanResult, console: Console) -> None:
    """The human report: score, worst accounts, types and tags, top violations with their fixes."""
    score = "n/a" if result.compliance_score is None else f"{result.compliance_score:.1%}"
    value = result.compliance_score or 0.0
    colour = "green" if value >= 0.9 else "yellow" if value >= 0.6 else "red"
    console.print(f"\n[bold]Compliance score: [{colour}]{score}[/][/]  "
                  f"({result.compliant_resources}/{result.in_scope_resources} in-scope resources compliant, "
                  f"{result.total_resources} scanned, {result.violations_total} violations)  "
                  f"status={result.status}, data quality={result.data_quality.status}", highlight=False)
    for f in result.data_quality.failed_shards:
        console.print(f"  [red]incomplete[/]: {f.shard}: {f.error}", highlight=False, markup=True)
    for note in result.data_quality.notes:
        console.print(f"  note: {note}", highlight=False, markup=False)

    def breakdown(title: str, entries: dict[str, Any], limit: int) -> None:
        table = Table(title=title, title_justify="left")
        for col in ("", "resources", "in scope", "compliant", "violations", "score"):
            table.add_column(col, justify="left" if not col else "right")
        for key, e in sorted(entries.items(), key=lambda kv: (kv[1].compliance_score, kv[0]))[:limit]:
            table.add_row(escape(key), str(e.total), str(e.in_scope), str(e.compliant), str(e.violations),
                          f"{e.compliance_score:.0%}")
        console.print(table)

    breakdown("Worst accounts", result.breakdowns.by_account, 10)
    breakdown("Worst resource types", result.breakdowns.by_resource_type, 10)
    tags = Table(title="Tags most often wrong", title_justify="left")
    for col in ("tag", "violations", "resources"):
        tags.add_column(col, justify="left" if col == "tag" else "right")
    for tag, t in sorted(result.breakdowns.by_tag.items(), key=lambda kv: -kv[1].violations)[:8]:
        tags.add_row(escape(tag), str(t.violations), str(t.resources))
    console.print(tags)
    top = Table(title=f"Typical violations ({len(result.violations)} of {result.violations_total}; "
                      "--format json lists all)", title_justify="left")
    for col in ("account", "resource", "problem", "suggestion"):
        top.add_column(col, overflow="fold")
    for v in result.violations:
        # Tag keys and values come from the cloud: printed as data, never as console markup.
        top.add_row(v.account_id, escape(f"{v.resource_type} {v.resource_id}"), escape(v.message),
                    escape(v.suggestion or ""))
    console.print(top)


@app.command()
@handle_errors
def scan(
    policy: Annotated[Path | None, typer.Option(help="Tagging policy JSON (default: the configured one).")] = None,
    accounts: Annotated[str | None, typer.Option(help=(
        "Comma-separated account ids and/or OU / root ids (ou-..., r-...), or 'all'."))] = None,
    regions: Annotated[str | None, typer.Option(help="Comma-separated regions, or 'all'.")] = None,
    resource_types: Annotated[str | None, typer.Option(help="Comma-separated types, or 'all'.")] = None,
    format: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.table,
    output: Annotated[Path | None, typer.Option(help="Write the result to this file.")] = None,
    fail_under: Annotated[float | None, typer.Option(min=0, max=1, help="Exit 3 when the score is below.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the scan.")] = 3600,
    force_refresh: Annotated[bool, typer.Option(help=(
        "Read the cloud even where a recent identical scan's inventory could be reused "
        "(FINOPS_INVENTORY_CACHE_MINUTES)."))] = False,
) -> None:
    """Scan the estate and print the result (progress on stderr)."""
    from services import policy_sources, scans

    request = _request(accounts, regions, resource_types)
    request.force_refresh = force_refresh
    settings = _settings(policy_path=_policy_path(policy))
    rt = _runtime(settings)
    # With no policy configured, the organization's own tag policies govern (synced when stale).
    attempt = policy_sources.sync_if_due(rt, trigger="cli")
    if attempt is not None and attempt.status == "succeeded":
        err.print(f"AWS Organizations tag policies synced: {attempt.message}", highlight=False)
    scan_id = scans.submit(rt, request, requested_by="cli")
    err.print(f"scan {scan_id} submitted", highlight=False)
    result = wait_with_progress(rt, scan_id, timeout=timeout)
    render_result(rt, result, format, output)
    if result.status == "failed":
        err.print(f"[red]scan failed[/]: {result.error}", highlight=False)
        raise typer.Exit(1)
    if fail_under is not None and (result.compliance_score or 0.0) < fail_under:
        err.print(f"compliance score {result.compliance_score:.3f} is under {fail_under}", highlight=False)
        raise typer.Exit(3)


@app.command()
@handle_errors
def report(
    scan_id: Annotated[str | None, typer.Option("--scan-id", help="Scan to report on (default: the latest finished).")
                       ] = None,
    format: Annotated[str, typer.Option("--format", help="json, csv (every violation), markdown or html.")
                      ] = "markdown",
    resource_types: Annotated[str | None, typer.Option(help="Only these comma-separated types.")] = None,
    output: Annotated[Path | None, typer.Option(help="Write the report to this file.")] = None,
    recommendations: Annotated[bool, typer.Option("--recommendations/--no-recommendations",
                                                  help="Include ranked fixes with their score impact.")] = True,
) -> None:
    """Compliance report of a finished scan (no cloud calls): summary, trend, breakdowns, offenders, fixes."""
    from services import report_formats

    report_formats.get_format(format, field="--format")  # a typo fails before the database is opened
    types = None if resource_types is None else [t.strip() for t in resource_types.split(",")]
    try:
        rendered = report_formats.generate(_runtime(_settings()), format=format, scan_id=scan_id,
                                           resource_types=types, include_recommendations=recommendations)
    except AppError as exc:  # name the option the user typed, not the service's field
        exc.field = {"scan_id": "--scan-id", "resource_types": "--resource-types"}.get(exc.field or "", exc.field)
        raise
    s = rendered.report.summary
    err.print(f"report of scan {rendered.report.scan_id} ({rendered.report.scan_status}): score "
              f"{s.compliance_score:.1%}, {s.violations_total} violations, data quality "
              f"{rendered.report.data_quality.status}", highlight=False, markup=False)
    _write_output(rendered.text, output)


@app.command()
@handle_errors
def export(
    scan_id: Annotated[str | None, typer.Option("--scan-id", help="Scan to export (default: the latest finished).")
                       ] = None,
    format: Annotated[str, typer.Option("--format", help="csv (every cell filled, spreadsheet-safe) or json.")] = "csv",
    columns: Annotated[str | None, typer.Option(help="Comma-separated columns, in order (default: resource_arn ... "
                                                     "suggestion; also rule_id, rule_source).")] = None,
    severity: Annotated[str | None, typer.Option(help="all, errors_only or warnings_only.")] = None,
    resource_types: Annotated[str | None, typer.Option(help="Only these comma-separated types.")] = None,
    accounts: Annotated[str | None, typer.Option(help="Only these comma-separated account ids.")] = None,
    regions: Annotated[str | None, typer.Option(help="Only these comma-separated regions.")] = None,
    tag_names: Annotated[str | None, typer.Option(help="Only violations of these comma-separated tag keys.")] = None,
    output: Annotated[Path | None, typer.Option(help="Write the export to this file.")] = None,
) -> None:
    """Export every violation of a finished scan as CSV or JSON (no cloud calls), streamed, errors first."""
    from services import exports

    try:
        exports.check_options(format=format, columns=columns, severity=severity)  # before the database
        if output is not None and not output.resolve().parent.is_dir():
            raise InvalidInput(f"folder '{output.resolve().parent}' does not exist", field="--output",
                               fix="create the folder or choose another path")
        rt = _runtime(_settings())
        # Comma-separated option values are split by the service.
        spec = exports.prepare(rt, scan_id=scan_id, format=format, columns=columns, severity=severity,
                               resource_types=resource_types, accounts=accounts, regions=regions, tag_names=tag_names)
    except AppError as exc:  # name the option the user typed, not the service's field
        if exc.field in ("scan_id", "format", "columns", "severity", "resource_types", "accounts", "regions",
                         "tag_names"):
            exc.field = "--" + exc.field.replace("_", "-")
        raise
    err.print(f"exporting {spec.row_count} violations of scan {spec.scan_id} ({spec.scan_status}, data quality "
              f"{spec.data_quality.status}) as {spec.format}", highlight=False, markup=False)
    chunks = exports.stream(rt, spec)
    if output is None:
        for chunk in chunks:
            sys.stdout.write(chunk)
        sys.stdout.flush()
        return
    # Write beside the target and rename: a reader never sees half an export.
    target = output.resolve()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            for chunk in chunks:
                fh.write(chunk)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    err.print(f"wrote {target}")


@app.command()
@handle_errors
def demo(
    once: Annotated[bool, typer.Option("--once", help="Exit after the report.")] = False,
    format: Annotated[OutputFormat, typer.Option("--format", help="Output format of the report.")] = OutputFormat.table,
    port: Annotated[int, typer.Option(help="Gateway port (0 = any free port).")] = 8000,
    host: Annotated[str, typer.Option(help="Gateway bind address.")] = "127.0.0.1",
) -> None:
    """Emulated AWS organization -> full scan through the real pipeline -> report -> serve MCP."""
    from api.demo import run_demo

    run_demo(once=once, fmt=format, port=port, host=host, render=render_result, wait=wait_with_progress,
             serve=_serve, console=err)


@app.command()
@handle_errors
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default FINOPS_HOST or 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default FINOPS_PORT or 8000).")] = None,
) -> None:
    """Serve the HTTP API and MCP over streamable HTTP at /mcp/."""
    settings = _settings()
    _serve(settings, host or settings.host, settings.port if port is None else port)


def _serve(settings: Settings, host: str, port: int, on_started: Callable[[int], None] | None = None) -> None:
    import uvicorn

    from api.http.app import create_app

    application = create_app(lambda: _runtime(settings), host=host, settings=settings)
    config = uvicorn.Config(application, host=host, port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    if on_started is not None:
        original = server.startup

        async def startup(sockets: Any = None) -> None:
            await original(sockets)
            bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
            on_started(bound)

        server.startup = startup  # type: ignore[method-assign]
    server.run()


@app.command()
@handle_errors
def mcp() -> None:
    """Serve MCP over stdio (for Claude Desktop and other local MCP clients)."""
    # stdout carries the protocol: every log line must go to stderr.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    from api.mcp.server import build_mcp_server

    settings = _settings()
    if settings.organization_policies_wanted:
        import threading

        from services import policy_sources

        # In the background: the client's initialize handshake must not wait on AWS Organizations.
        threading.Thread(target=lambda: policy_sources.sync_if_due(_runtime(settings), trigger="startup"),
                         daemon=True, name="policy-sync").start()
    from services.auth import stdio_principal

    # The local user: read-only unless FINOPS_STDIO_SCOPES grants more (e.g. tag:write,tag:approve).
    build_mcp_server(lambda: _runtime(settings), principal=stdio_principal(settings)).run("stdio")


@app.command()
@handle_errors
def cost(
    focus: Annotated[str, typer.Option("--focus", help="FOCUS cost export: CSV, CSV.gz or Parquet file, a folder of "
                                                        "parts, or an s3:// URI.")],
    policy: Annotated[Path | None, typer.Option(help="Tagging policy JSON (default: the configured one).")] = None,
    metric: Annotated[str, typer.Option(help="Cost column: EffectiveCost (amortized) or BilledCost.")] = (
        "EffectiveCost"),
    format: Annotated[str, typer.Option("--format", help="Output format: table or json.")] = "table",
    output: Annotated[Path | None, typer.Option(help="Write the result to this file.")] = None,
    currency: Annotated[str | None, typer.Option(help="Count only rows billed in this currency.")] = None,
    resource_types: Annotated[str | None, typer.Option(help="Comma-separated types (ec2:instance, s3:*).")] = None,
) -> None:
    """Cost of non-compliance from a FOCUS export: spend the policy cannot attribute, each row counted once."""
    from services.cost import attribution_from_focus
    from services.focus import RowFilter

    if format not in ("table", "json"):
        raise InvalidInput(f"unknown format '{format}'", field="--format", fix="use table or json")
    types = [t for t in resource_types.split(",") if t.strip()] if resource_types is not None else None
    policy_file = _policy_path(policy) or _settings().policy_path
    try:
        result = attribution_from_focus(focus, policy_file, metric=metric, resource_types=types,
                                        row_filter=RowFilter(currency=currency) if currency else None)
    except InvalidInput as exc:
        # The service names its parameters; on the command line they are options.
        if exc.field in ("focus", "metric", "currency", "resource_types"):
            exc.field = "--" + exc.field.replace("_", "-")
        raise
    if format == "json":
        _write_output(result.model_dump_json(indent=2) + "\n", output)
    elif output is not None:
        import io

        capture = Console(file=io.StringIO(), record=True, width=120)
        print_cost(result, capture)
        _write_output(capture.export_text(), output)
    else:
        print_cost(result, Console())


def print_cost(result: Any, console: Console) -> None:
    """The human view of a CostAttribution: headline figures, then the largest gaps per dimension."""
    cur = result.currency or ""

    def money(value: float) -> str:
        return f"{value:,.2f}"

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f}%"

    gap_pct = pct(result.attribution_gap_percentage)
    console.print(f"\n[bold]Cost of non-compliance[/] ({result.metric}, {cur}, {result.method} from "
                  f"{escape(result.source_name)}, policy {result.policy_version})", highlight=False)
    head = Table(show_header=False, box=None)
    head.add_column("", justify="left")
    head.add_column("", justify="right")
    head.add_column("", justify="right")
    head.add_row("total", money(result.total_cost), f"{result.rows.total} rows")
    head.add_row("untaggable (reported apart)", money(result.untaggable_cost), f"{result.rows.untaggable} rows")
    head.add_row("taggable", money(result.taggable_cost), f"{result.rows.taggable} rows")
    head.add_row("  attributable", money(result.attributable_cost), f"{result.rows.attributable} rows")
    head.add_row("  [bold]attribution gap[/]", f"[bold]{money(result.attribution_gap)}[/]",
                 f"{result.rows.gap} rows, {gap_pct} of taggable")
    console.print(head)

    keys = Table(title="Spend failing each required key (overlapping: a row can fail several keys)",
                 title_justify="left")
    for col in ("tag key", "gap", "of applicable", "rows", "problems"):
        keys.add_column(col, justify="left" if col in ("tag key", "problems") else "right")
    for key, k in result.by_tag_key.items():
        problems = ", ".join(f"{p} {money(c)}" for p, c in k.by_problem.items())
        keys.add_row(escape(key), money(k.attribution_gap), pct(k.gap_percentage_of_applicable), str(k.gap_rows),
                     escape(problems))
    console.print(keys)

    for title, entries in (("service", result.by_service), ("account", result.by_account),
                           ("region", result.by_region), ("resource type", result.by_resource_type)):
        table = Table(title=f"Largest gaps by {title} ({min(len(entries), 10)} of {len(entries)}; --format json "
                            "lists all)", title_justify="left")
        for col in (title, "total", "taggable", "gap", "gap %"):
            table.add_column(col, justify="left" if col == title else "right", overflow="fold")
        for key, e in list(entries.items())[:10]:
            table.add_row(escape(key), money(e.total_cost), money(e.taggable_cost), money(e.attribution_gap),
                          pct(e.attribution_gap_percentage))
        console.print(table)
    for note in result.notes:
        console.print(f"  note: {note}", highlight=False, markup=False)


@policy_app.command("validate")
@handle_errors
def policy_validate(
    file: Annotated[Path, typer.Argument(help="Policy JSON file.")],
    target: Annotated[str | None, typer.Option(help="Also check the limits of aws, azure or gcp.")] = None,
) -> None:
    """Validate and lint a policy file; every problem is listed with its location (exit 2 on any error)."""
    from policies.lint import lint_policy
    from scanner.providers.aws import registry
    from services.policy_store import read_policy_file

    if target not in (None, "aws", "azure", "gcp"):
        raise InvalidInput(f"unknown target '{target}'", field="--target", fix="use aws, azure or gcp")
    policy = read_policy_file(file)
    # Today (UTC) turns on the exemption expiry checks: expired and soon-expiring waivers are flagged.
    findings = lint_policy(policy, known_resource_types=registry.all_types(), target=target,  # type: ignore[arg-type]
                           as_of=datetime.now(UTC).date())
    for finding in findings:
        err.print(str(finding), highlight=False, markup=False)
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        raise InvalidInput(f"{len(errors)} error(s) in {file.name}", field="policy",
                           fix="correct each listed location")
    typer.echo(f"{file}: valid ({len(policy.required_tags)} required, {len(policy.optional_tags)} optional tags; "
               f"{len(findings)} warning(s); version {policy.content_hash()[:12]})")


@policy_app.command("show")
@handle_errors
def policy_show(file: Annotated[Path | None, typer.Argument(help="Policy file (default: the configured one).")] = None,
                ) -> None:
    """Print the policy in force (normalized JSON)."""
    from services.policy_store import read_policy_file

    path = file or _settings().policy_path
    typer.echo(json.dumps(read_policy_file(path).model_dump(mode="json"), indent=2))


@policy_app.command("import-aws")
@handle_errors
def policy_import_aws(
    file: Annotated[Path | None, typer.Argument(help="An AWS tag policy JSON file to convert.")] = None,
    policy_id: Annotated[str | None, typer.Option("--policy-id", help="Fetch this policy from Organizations.")] = None,
    save: Annotated[bool, typer.Option(help="With --policy-id: save it in the policy folder.")] = False,
) -> None:
    """Convert an AWS Organizations tag policy to this project's format (a file or --policy-id), or with
    neither, sync every account's effective tag policy from the organization into the database."""
    from services import policy_sources

    if file is not None and policy_id is not None:
        raise InvalidInput("give a FILE or --policy-id, not both", field="--policy-id", fix="drop one of them")
    if file is not None:
        typer.echo(json.dumps(policy_sources.convert_file(file).model_dump(mode="json"), indent=2))
        return
    rt = _runtime(_settings())
    if policy_id is not None:
        imported = policy_sources.import_policy(rt, policy_id, save=save)
        typer.echo(json.dumps(imported.model_dump(mode="json"), indent=2))
        return
    result = policy_sources.sync_organization(rt, imported_by="cli")
    typer.echo(json.dumps(result.model_dump(mode="json"), indent=2))


@policy_app.command("effective")
@handle_errors
def policy_effective(files: Annotated[list[str], typer.Argument(help=(
        "AWS tag policy files ordered root -> OU -> account; several at one level as a.json+b.json."))]) -> None:
    """Print the effective tag policy AWS computes from policies attached along an account's path."""
    from services import policy_sources

    levels = [[Path(part) for part in level.split("+") if part] for level in files]
    typer.echo(json.dumps(policy_sources.effective_from_files(levels), indent=4))


@policy_app.command("export")
@handle_errors
def policy_export(
    to: Annotated[str, typer.Option("--to", help="aws (tag policy), aws-config or azure.")] = "aws",
    policy: Annotated[Path | None, typer.Option(help="Policy file (default: the configured one).")] = None,
) -> None:
    """Export the policy: AWS tag policy JSON, AWS Config required-tags rules (CloudFormation), or Azure
    Policy definitions. Prints one JSON object of documents; what cannot be expressed goes to stderr."""
    from policies.aws.convert import from_policy
    from policies.export import export_policy
    from services.policy_store import read_policy_file

    if to not in ("aws", "aws-config", "azure"):
        raise InvalidInput(f"unknown export target '{to}'", field="--to", fix="use aws, aws-config or azure")
    source = read_policy_file(policy or _settings().policy_path)
    if to == "aws":
        typer.echo(json.dumps(from_policy(source), indent=2))
        return
    result = export_policy(source, to)  # type: ignore[arg-type]
    for note in result.notes:
        err.print(f"note: {note}", highlight=False, markup=False)
    typer.echo(json.dumps(result.documents, indent=2))


@db_app.command("upgrade")
@handle_errors
def db_upgrade() -> None:
    """Apply the database migrations (the compose 'migrate' step)."""
    from sqlalchemy.exc import OperationalError

    from services.db.migrate import upgrade
    from services.errors import Unavailable

    settings = _settings()
    try:
        upgrade(settings.effective_database_url)
    except OperationalError as exc:
        raise Unavailable("the database cannot be reached", fix="check DATABASE_URL") from exc
    typer.echo("database is at the latest schema")


register_schedule_commands(app, handle_errors=handle_errors, settings=_settings, runtime=_runtime, err=err)
register_apikey_commands(app, handle_errors=handle_errors, settings=_settings, err=err)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
