"""The active tagging policy: loaded from its file, validated, versioned by content hash in the database.

Each scan records the version it used; workers compile that exact version, so changing the policy
file mid-scan cannot mix rules inside one scan.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from policies.engine import CompiledPolicy, compile_policy
from policies.policy import Policy, PolicyError, load_policy, load_policy_file
from services.db.engine import Database, dialect_insert
from services.db.models import PolicyRow
from services.errors import NotFound, PolicyInvalid


@dataclass(frozen=True)
class PolicyVersion:
    id: str
    version_label: str
    source: str
    policy: Policy


def policy_error_to_app(exc: PolicyError, source: str) -> PolicyInvalid:
    problems = [{"location": p.location, "message": p.message} for p in exc.problems]
    return PolicyInvalid(f"the tagging policy in {source} is invalid ({len(problems)} problem(s)): {exc}",
                         field="policy", fix="correct each listed location and load the policy again",
                         details=problems)


def read_policy_file(path: Path) -> Policy:
    """Load and validate a policy file, mapping every failure to PolicyInvalid."""
    if not path.is_file():
        raise PolicyInvalid(f"policy file '{path.name}' does not exist", field="policy",
                            fix="pass the path of a tagging policy JSON file")
    try:
        return load_policy_file(path)
    except PolicyError as exc:
        raise policy_error_to_app(exc, path.name) from exc


def register_policy(db: Database, policy: Policy, source: str, *, imported_by: str | None = None) -> PolicyVersion:
    """Store ``policy`` (once per content hash) and return its version."""
    digest = policy.content_hash()
    with db.session() as s:
        # ON CONFLICT, not get-then-add: two scans starting together (two beat slots in one minute) both
        # register the same content hash, and the second plain INSERT would fail its whole scan.
        stmt = dialect_insert(s, PolicyRow).values(
            id=digest, version_label=policy.version, source=source,
            content=policy.model_dump(mode="json"), imported_by=imported_by)
        s.execute(stmt.on_conflict_do_nothing(index_elements=["id"]))
    return PolicyVersion(id=digest, version_label=policy.version, source=source, policy=policy)


def active_policy(db: Database, path: Path) -> PolicyVersion:
    """The policy in force: the configured file, validated and registered."""
    policy = read_policy_file(path)
    return register_policy(db, policy, source=f"file:{path.name}")


def stored_policy(db: Database, policy_id: str) -> Policy:
    """A stored policy version (NotFound when the id is unknown)."""
    with db.session() as s:
        row = s.get(PolicyRow, policy_id)
        if row is None:
            raise NotFound(f"policy version {policy_id} is not stored", field="policy_id")
        content: dict[str, Any] = row.content
    return load_policy(content)


class CompiledPolicyCache:
    """Compiled policies by (version id, exemption date); compiling is cheap but not free, and versions
    never change. The date is part of the key because exemptions expire: a scan is judged by its own day."""

    # A long-running worker sees one new date a day per version; far fewer entries than this.
    _LIMIT = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, date | None], CompiledPolicy] = {}

    def get(self, db: Database, policy_id: str, as_of: date | None = None) -> CompiledPolicy:
        key = (policy_id, as_of)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        compiled = compile_policy(stored_policy(db, policy_id), as_of)
        with self._lock:
            if len(self._cache) >= self._LIMIT:
                self._cache.clear()
            self._cache[key] = compiled
        return compiled
