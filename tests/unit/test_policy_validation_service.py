"""validate_policy_content: the service behind the validate_tagging_policy tool and POST /v1/policy/validate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.errors import InvalidInput
from services.policy_validation import validate_policy_content

DEFAULT = Path(__file__).resolve().parents[2] / "policies" / "examples" / "default.json"


def test_the_shipped_policy_is_valid() -> None:
    answer = validate_policy_content(DEFAULT.read_text())
    assert answer.valid and answer.errors == 0 and answer.version and answer.required_tags == 4


def test_schema_errors_carry_location_and_line() -> None:
    text = '{\n  "required_tags": [\n    {"name": "Env", "validation_regex": "(unclosed"}\n  ]\n}'
    answer = validate_policy_content(text)
    assert not answer.valid and answer.version is None
    [finding] = answer.findings
    assert finding.location == "required_tags[0].validation_regex" and finding.code == "schema"
    assert finding.line == 3


def test_lint_findings_expired_exemptions_and_target_limits() -> None:
    policy = json.loads(DEFAULT.read_text())
    policy["exemptions"] = [{"id": "E-1", "reason": "old", "expires": "2001-01-01", "accounts": ["123456789012"]}]
    answer = validate_policy_content(policy)
    assert answer.valid and answer.warnings >= 1  # expired: a warning, not an error
    assert any(f.code == "exemption-expired" and f.location == "exemptions[0].expires" for f in answer.findings)
    gcp = validate_policy_content(policy, target="gcp")
    assert not gcp.valid and any(f.code == "gcp-key-format" for f in gcp.findings)  # 'CostCenter' has capitals


def test_bad_arguments_name_the_field() -> None:
    with pytest.raises(InvalidInput) as err:
        validate_policy_content("{}", target="oracle")
    assert err.value.field == "target"
    with pytest.raises(InvalidInput) as err:
        validate_policy_content("x" * 1_000_001)
    assert err.value.field == "policy"
