"""Validate and lint a tagging policy given as content (never a path: a caller must not make the server read
its files). The same checks as ``finops-tags policy validate``: schema errors with their location (and
line/column for JSON text), then lint findings, exemption expiry judged on today's date (UTC)."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field

from policies.lint import lint_policy
from policies.policy import PolicyError, load_policy
from scanner.providers.aws import registry
from services.db.models import utcnow
from services.errors import InvalidInput

MAX_POLICY_BYTES = 1_000_000


class PolicyFinding(BaseModel):
    location: str = Field(description="JSON path, e.g. required_tags[1].allowed_values[0].")
    severity: Literal["error", "warning"]
    code: str = Field(description="Stable code: 'schema' for load errors, else the lint code.")
    message: str = Field(description="What is wrong and how to fix it.")
    line: int | None = None
    column: int | None = None


class PolicyValidation(BaseModel):
    valid: bool = Field(description="True when there is no error (warnings allowed).")
    version: str | None = Field(description="Content hash of the policy when it loads; null when it does not.")
    required_tags: int = 0
    optional_tags: int = 0
    errors: int
    warnings: int
    findings: list[PolicyFinding]


def validate_policy_content(content: str | dict[str, Any], *, target: str | None = None) -> PolicyValidation:
    """Every problem of a policy document (JSON text or an object), with its location."""
    if target not in (None, "aws", "azure", "gcp"):
        raise InvalidInput(f"unknown target {target!r}", field="target", fix="use aws, azure or gcp, or omit it")
    size = len(content.encode()) if isinstance(content, str) else len(json.dumps(content, default=str).encode())
    if size > MAX_POLICY_BYTES:
        raise InvalidInput(f"the policy is {size} bytes", field="policy",
                           fix=f"a tagging policy is a few KB; send at most {MAX_POLICY_BYTES} bytes")
    try:
        policy = load_policy(content, source="policy")
    except PolicyError as exc:
        findings = [PolicyFinding(location=p.location, severity="error", code="schema", message=p.message,
                                  line=p.line, column=p.column) for p in exc.problems]
        return PolicyValidation(valid=False, version=None, errors=len(findings), warnings=0, findings=findings)
    lint = lint_policy(policy, known_resource_types=registry.all_types(), target=target,  # type: ignore[arg-type]
                       as_of=utcnow().date())
    findings = [PolicyFinding(location=f.location, severity=f.severity.value, code=f.code,
                              message=f.message) for f in lint]
    errors = sum(f.severity == "error" for f in findings)
    return PolicyValidation(valid=errors == 0, version=policy.content_hash(), required_tags=len(policy.required_tags),
                            optional_tags=len(policy.optional_tags), errors=errors,
                            warnings=len(findings) - errors, findings=findings)
