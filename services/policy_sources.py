"""Policy sources beyond the policy file: AWS Organizations tag policies.

``sync_organization`` computes every active account's effective tag policy (root -> OUs -> account, as
AWS does), stores each as a versioned policy and records which account it governs; scans submitted
afterwards judge each account by its own rules (the mapping is read at every submit: a sync takes
effect without a restart). Files are written only under the configured policy folder, under names this
service chooses, never a path a caller names.

Every sync attempt is recorded (``policy_syncs``) for /health. ``sync_if_due`` is what start-up, beat
and CLI scans call: it syncs only when the settings want organization policies and the last sync is
older than ``policy_sync_minutes``; in ``auto`` mode credentials that reach no organization are not an
error (the policy file stays in force, recorded as ``not_applicable``).
"""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from policies.aws.convert import to_policy
from policies.aws.inheritance import effective_policy
from policies.aws.tag_policy import TagPolicyDoc, parse_tag_policy
from policies.policy import Policy, PolicyError
from scanner.providers.aws.organization import list_organization_accounts, list_tag_policies, policy_path_for_account
from services.db.models import AccountPolicyRow, PolicySyncRow, utcnow
from services.errors import AppError, InvalidInput, NotFound, Unavailable
from services.policy_store import policy_error_to_app, register_policy
from services.runtime import Runtime

log = logging.getLogger(__name__)

_POLICY_ID = re.compile(r"p-[0-9a-z]{8,128}")
# Statuses of a sync attempt that count as "done" when deciding whether another one is due.
_SETTLED = ("succeeded", "not_applicable")


class NoOrganization(InvalidInput):
    """The credentials reach no AWS Organizations management account (not in an organization, or denied)."""


class AccountPolicy(BaseModel):
    account_id: str
    policy_version: str
    source: str = Field(description="The tag policies, root first, that make up this account's effective policy.")
    required_tags: list[str]


class SyncResult(BaseModel):
    tag_policies: int
    accounts: list[AccountPolicy]
    accounts_without_tag_policy: list[str]
    skipped_accounts: list[str]


class ImportedPolicy(BaseModel):
    policy_id: str
    name: str
    policy: dict[str, Any] = Field(description="The tag policy in this project's format.")
    saved_as: str | None = Field(default=None, description="File name inside the policy folder, when saved.")


def effective_from_files(levels: list[list[Path]]) -> dict[str, Any]:
    """The effective tag policy AWS computes from policies attached root -> OU -> account (files)."""
    docs = [[_parse_file(path) for path in level] for level in levels]
    return effective_policy(docs).to_aws_json()


def convert_file(path: Path) -> Policy:
    """One AWS tag policy file in this project's format (as if it were the only policy attached)."""
    doc = _parse_file(path)
    return to_policy(effective_policy([[doc]]), source_label=f"file:{path.name}")


def _parse_file(path: Path) -> TagPolicyDoc:
    if not path.is_file():
        raise InvalidInput(f"file '{path.name}' does not exist", field="files",
                           fix="pass AWS tag policy JSON files ordered root -> OU -> account")
    try:
        return parse_tag_policy(path.read_text(encoding="utf-8"), name=path.name, source=path.name)
    except PolicyError as exc:
        raise policy_error_to_app(exc, path.name) from None


def _org_client(rt: Runtime) -> Any:
    return rt.aws.client(rt.aws.caller_account(), "organizations", rt.settings.aws_default_region)


def import_policy(rt: Runtime, policy_id: str, *, save: bool = False) -> ImportedPolicy:
    """Fetch one tag policy from AWS Organizations and convert it; optionally save it in the policy folder."""
    if not _POLICY_ID.fullmatch(policy_id or ""):
        raise InvalidInput(f"'{policy_id}' is not a policy id", field="policy_id",
                           fix="pass an AWS Organizations policy id such as p-abcd1234 (list them in the console)")
    found = {p.id: p for p in _call(lambda: list_tag_policies(_org_client(rt)))}
    if policy_id not in found:
        raise NotFound(f"tag policy {policy_id} does not exist in this organization", field="policy_id",
                       fix="omit policy_id to sync every account's effective policy, or pass an existing id")
    org_policy = found[policy_id]
    try:
        doc = parse_tag_policy(org_policy.content, policy_id=org_policy.id, name=org_policy.name)
    except PolicyError as exc:
        raise policy_error_to_app(exc, org_policy.id) from None
    policy = to_policy(effective_policy([[doc]]), source_label=f"aws:{org_policy.id}")
    saved = None
    if save:
        folder = rt.settings.effective_policy_dir
        folder.mkdir(parents=True, exist_ok=True)
        saved = f"aws-{org_policy.id}.json"  # our name, inside our folder: callers never choose a path
        tmp = folder / f".{saved}.tmp"
        tmp.write_text(json.dumps(policy.model_dump(mode="json"), indent=2), encoding="utf-8")
        tmp.replace(folder / saved)
    return ImportedPolicy(policy_id=org_policy.id, name=org_policy.name, policy=policy.model_dump(mode="json"),
                          saved_as=saved)


class SyncAttempt(BaseModel):
    trigger: str
    status: str = Field(description="running, succeeded, failed, or not_applicable (no organization reached).")
    started_at: str
    finished_at: str | None = None
    message: str | None = None
    tag_policies: int | None = None
    accounts: int | None = None


def sync_organization(rt: Runtime, *, imported_by: str = "local", trigger: str = "manual") -> SyncResult:
    """Compute and store every active account's effective tag policy; replaces the previous mapping.

    The attempt is recorded whatever happens; errors propagate (``NoOrganization`` when the credentials
    reach no organization)."""
    attempt_id = _record_start(rt, trigger, imported_by)
    try:
        result = _sync(rt, imported_by)
    except AppError as exc:
        status = "not_applicable" if isinstance(exc, NoOrganization) else "failed"
        _record_end(rt, attempt_id, status, message=exc.message)
        raise
    except Exception:
        _record_end(rt, attempt_id, "failed", message="unexpected error; see the server log")
        raise
    message = (f"{len(result.accounts)} account(s) judged by their effective tag policy" if result.accounts else
               "the organization attaches no tag policy to any account; the policy file stays in force")
    _record_end(rt, attempt_id, "succeeded", tag_policies=result.tag_policies, accounts=len(result.accounts),
                message=message)
    return result


def sync_if_due(rt: Runtime, *, trigger: str, force: bool = False) -> SyncAttempt | None:
    """Sync when the settings want organization policies and none settled within ``policy_sync_minutes``.

    Never raises for a cloud, organization or database problem: start-up, beat and CLI scans go on with
    what is stored (the attempt and its reason are recorded and shown by /health). Returns None when no
    sync was wanted or due (or the database could not say)."""
    settings = rt.settings
    if not settings.organization_policies_wanted:
        return None
    try:
        if not force and not _due(rt, settings.policy_sync_minutes):
            return None
        sync_organization(rt, imported_by=trigger, trigger=trigger)
    except NoOrganization as exc:
        if settings.policy_source == "aws-organizations":
            log.warning("AWS Organizations tag policy sync (%s) impossible: %s", trigger, exc.message)
        else:
            log.info("no AWS Organizations tag policies reachable (%s); the policy file stays in force", trigger)
    except AppError as exc:
        # Includes an unreachable database: start-up threads and beat must log it, not crash on it.
        log.warning("AWS Organizations tag policy sync (%s) failed: %s", trigger, exc.message)
    try:
        return latest_attempt(rt)
    except AppError:
        return None


def _due(rt: Runtime, interval_minutes: int) -> bool:
    with rt.db.session() as s:
        last = s.scalar(select(PolicySyncRow.finished_at).where(PolicySyncRow.status.in_(_SETTLED))
                        .order_by(PolicySyncRow.id.desc()).limit(1))
    if last is None:
        return True
    if interval_minutes == 0:
        return False
    if last.tzinfo is None:  # SQLite returns naive datetimes; they were written in UTC
        last = last.replace(tzinfo=utcnow().tzinfo)
    return utcnow() - last >= timedelta(minutes=interval_minutes)


def latest_attempt(rt: Runtime, *, settled_only: bool = False) -> SyncAttempt | None:
    """The newest sync attempt (or the newest that succeeded / found no organization)."""
    query = select(PolicySyncRow).order_by(PolicySyncRow.id.desc()).limit(1)
    if settled_only:
        query = query.where(PolicySyncRow.status.in_(_SETTLED))
    with rt.db.session() as s:
        row = s.scalar(query)
        if row is None:
            return None
        return SyncAttempt(trigger=row.trigger, status=row.status, started_at=row.started_at.isoformat(),
                           finished_at=row.finished_at.isoformat() if row.finished_at else None,
                           message=row.message, tag_policies=row.tag_policies, accounts=row.accounts)


def _record_start(rt: Runtime, trigger: str, requested_by: str) -> int:
    with rt.db.session() as s:
        row = PolicySyncRow(trigger=trigger, status="running", requested_by=requested_by[:256])
        s.add(row)
        s.flush()
        return int(row.id)


def _record_end(rt: Runtime, attempt_id: int, status: str, *, message: str | None = None,
                tag_policies: int | None = None, accounts: int | None = None) -> None:
    with rt.db.session() as s:
        row = s.get(PolicySyncRow, attempt_id)
        if row is not None:
            row.status, row.message, row.finished_at = status, message, utcnow()
            row.tag_policies, row.accounts = tag_policies, accounts


def _sync(rt: Runtime, imported_by: str) -> SyncResult:
    org = _call(lambda: _org_client(rt))
    # Outside an organization some list calls answer empty lists; this one says why (NotInUse, Denied).
    _call(lambda: org.describe_organization())
    org_policies = _call(lambda: list_tag_policies(org))
    docs: dict[str, TagPolicyDoc] = {}
    for p in org_policies:
        try:
            docs[p.id] = parse_tag_policy(p.content, policy_id=p.id, name=p.name)
        except PolicyError as exc:
            raise policy_error_to_app(exc, p.id) from None
    active, skipped = _call(lambda: list_organization_accounts(org))
    rows: list[AccountPolicyRow] = []
    accounts: list[AccountPolicy] = []
    without: list[str] = []
    for account in active:
        path = _call(lambda a=account.id: policy_path_for_account(org, a))
        levels = [[docs[pid] for pid in level.policy_ids if pid in docs] for level in path]
        if not any(levels):
            without.append(account.id)
            continue
        source = " + ".join(f"{docs[pid].label} @ {level.target_type} {level.target_id}"
                            for level in path for pid in level.policy_ids if pid in docs)
        policy = to_policy(effective_policy(levels), source_label=f"aws-organizations:{account.id}")
        version = register_policy(rt.db, policy, source=f"aws-organizations:{account.id}", imported_by=imported_by)
        rows.append(AccountPolicyRow(account_id=account.id, policy_id=version.id, source=source[:4000],
                                     synced_at=utcnow()))
        accounts.append(AccountPolicy(account_id=account.id, policy_version=version.id, source=source,
                                      required_tags=sorted(t.name for t in policy.required_tags)))
    _replace_mapping(rt, rows)
    return SyncResult(tag_policies=len(org_policies), accounts=accounts, accounts_without_tag_policy=without,
                      skipped_accounts=[a.id for a in skipped])


def _replace_mapping(rt: Runtime, rows: list[AccountPolicyRow]) -> None:
    for attempt in (1, 2):
        try:
            with rt.db.session() as s:  # one transaction: scans never see half a sync
                s.execute(delete(AccountPolicyRow))
                s.add_all([AccountPolicyRow(account_id=r.account_id, policy_id=r.policy_id, source=r.source,
                                            synced_at=r.synced_at) for r in rows])
            return
        except IntegrityError:
            # Two gateways synced at once and the other committed between our delete and insert; both
            # computed the same content-addressed mapping, so writing ours again is right.
            if attempt == 2:
                raise


def _call(fn: Any) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "ClientError")
        if code in ("AccessDeniedException", "AccessDenied", "AWSOrganizationsNotInUseException"):
            raise NoOrganization(f"AWS Organizations answered {code}", field="credentials",
                               fix="run with credentials of the organization's management account "
                                   "(organizations:List*, organizations:Describe*)") from None
        raise Unavailable(f"AWS Organizations call failed: {code}", fix="retry later") from None
    except BotoCoreError as exc:
        raise Unavailable(f"AWS Organizations cannot be reached: {type(exc).__name__}",
                          fix="check network access and AWS_ENDPOINT_URL") from None
