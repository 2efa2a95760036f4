"""The ``finops-tags`` command line. Exit codes: 0 done, 1 runtime failure, 2 bad usage or input,
3 compliance score under ``--fail-under``. Progress goes to stderr, results to stdout or ``--output``."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import tempfile
import time
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
    """Poll the scan, drawing a progress bar on stderr, until it ends or ``timeout`` passes."""
    from services import scans

    deadline = time.monotonic() + timeout
    with Progress(TextColumn("[bold]scanning[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("shards"),
                  TextColumn("{task.fields[found]} resources"), TimeElapsedColumn(), console=err,
                  disable=quiet or not err.is_terminal, transient=True) as bar:
        task = bar.add_task("scan", total=None, found=0)
        while True:
            result = scans.get_scan(rt, scan_id, violations_limit=0)
            p = result.progress
            bar.update(task, total=p.shards_total or None, completed=p.shards_done, found=p.resources_found)
            if result.status in TERMINAL_STATUSES:
                return result
            if time.monotonic() >= deadline:
                raise AppError(f"scan {scan_id} still {result.status} after {timeout:.0f} s "
                               f"({p.shards_done}/{p.shards_total} shards)",
                               fix=f"read it later: GET /v1/scans/{scan_id}, or raise --timeout")
            time.sleep(0.2)


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
    accounts: Annotated[str | None, typer.Option(help="Comma-separated account ids, or 'all'.")] = None,
    regions: Annotated[str | None, typer.Option(help="Comma-separated regions, or 'all'.")] = None,
    resource_types: Annotated[str | None, typer.Option(help="Comma-separated types, or 'all'.")] = None,
    format: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.table,
    output: Annotated[Path | None, typer.Option(help="Write the result to this file.")] = None,
    fail_under: Annotated[float | None, typer.Option(min=0, max=1, help="Exit 3 when the score is below.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the scan.")] = 3600,
) -> None:
    """Scan the estate and print the result (progress on stderr)."""
    from services import policy_sources, scans

    request = _request(accounts, regions, resource_types)
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

    application = create_app(lambda: _runtime(settings), host=host)
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
    build_mcp_server(lambda: _runtime(settings), principal="local").run("stdio")


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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
