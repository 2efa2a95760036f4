"""The `finops-tags` command as a user runs it: real subprocesses, exit codes, stdout vs stderr."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "finops-tags")
pytestmark = pytest.mark.e2e


def run(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.fixture()
def base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FINOPS_", "DATABASE_URL", "CELERY_"))}
    env["FINOPS_HOME"] = str(tmp_path / "home")
    return env


def test_demo_once_json_is_the_full_result(base_env: dict[str, str]) -> None:
    proc = run(["demo", "--once", "--format", "json"], base_env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["status"] == "succeeded"
    assert result["data_quality"]["status"] == "complete"
    assert result["total_resources"] >= 600
    assert len(result["breakdowns"]["by_resource_type"]) >= 12
    assert len(result["breakdowns"]["by_account"]) >= 3
    # Every violation, not a page.
    assert len(result["violations"]) == result["violations_total"] > 25 and result["next_cursor"] is None
    scores = [e["compliance_score"] for e in result["breakdowns"]["by_account"].values()]
    assert min(scores) < max(scores)  # one account is clearly worse
    kinds = {v["violation_type"] for v in result["violations"]}
    assert {"missing_required_tag", "invalid_value", "wrong_key_case", "invalid_format", "prohibited_tag"} <= kinds
    assert any(v["suggestion"] == "production" for v in result["violations"] if v["current_value"] in ("prod", "Prod"))
    assert "scanning" not in proc.stdout  # progress stays on stderr


@pytest.fixture()
def seeded_env(base_env: dict[str, str], emulator: Any) -> tuple[dict[str, str], Any]:
    from scanner.emulator.demo_estate import seed_small_estate
    from scanner.emulator.server import aws_env

    emulator.reset()
    estate = seed_small_estate(emulator.endpoint_url)
    return {**base_env, **aws_env(emulator.endpoint_url)}, estate


def test_scan_formats_output_file_and_fail_under(seeded_env: tuple[dict[str, str], Any], tmp_path: Path) -> None:
    env, estate = seeded_env
    scope = ["--accounts", ",".join(estate.member_account_ids), "--regions", ",".join(estate.regions),
             "--resource-types", ",".join(sorted(estate.resource_types))]
    proc = run(["scan", *scope, "--format", "json", "--fail-under", "0.99"], env)
    assert proc.returncode == 3, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["compliance_score"] < 0.99 and "under 0.99" in proc.stderr

    out = tmp_path / "violations.csv"
    proc = run(["scan", *scope, "--format", "csv", "--output", str(out)], env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == result["violations_total"]
    assert {"resource_arn", "tag_name", "violation_type", "suggestion"} <= set(rows[0])

    proc = run(["scan", *scope, "--format", "markdown"], env)
    assert proc.returncode == 0 and proc.stdout.startswith("# Tag compliance scan")


@pytest.mark.parametrize(("args", "needle"), [
    (["scan", "--regions", "us-east-1,atlantis-1"], "unknown region"),
    (["scan", "--resource-types", "ec2:teleporter"], "unknown resource type"),
    (["scan", "--accounts", "42"], "12-digit"),
    (["scan", "--policy", "/nonexistent/policy.json"], "does not exist"),
    (["scan", "--format", "yaml"], "yaml"),
    (["scan", "--fail-under", "7"], "fail-under"),
    (["policy", "validate", "/nonexistent.json"], "does not exist"),
])
def test_bad_input_exits_2_without_a_traceback(base_env: dict[str, str], args: list[str], needle: str) -> None:
    proc = run(args, base_env, timeout=60)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_policy_validate_lists_every_problem(base_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "policy.json"
    bad.write_text(json.dumps({"required_tags": [
        {"name": "Env", "validation_regex": "(unclosed"},
        {"name": "Owner", "allowed_values": ["a*b*c"]},
    ]}))
    proc = run(["policy", "validate", str(bad)], base_env, timeout=60)
    assert proc.returncode == 2
    assert "required_tags[0].validation_regex" in proc.stderr
    assert "required_tags[1].allowed_values[0]" in proc.stderr
    good = run(["policy", "validate", str(ROOT / "policies/examples/default.json")], base_env, timeout=60)
    assert good.returncode == 0 and "valid" in good.stdout


def test_policy_validate_flags_expired_exemptions_and_bad_extensions(base_env: dict[str, str], tmp_path: Path) -> None:
    policy = json.loads((ROOT / "policies/examples/default.json").read_text())
    policy["exemptions"] = [{"id": "EXC-1", "reason": "legacy", "expires": "2001-02-03", "accounts": ["123456789012"]}]
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy))
    proc = run(["policy", "validate", str(path)], base_env, timeout=60)
    assert proc.returncode == 0, proc.stderr  # a warning, not an error
    assert "exemptions[0].expires" in proc.stderr and "expired on 2001-02-03" in proc.stderr
    policy["exemptions"][0].pop("expires")
    policy["tag_aliases"] = {"Enviroment": ["env"]}
    path.write_text(json.dumps(policy))
    proc = run(["policy", "validate", str(path)], base_env, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "exemptions[0].expires" in proc.stderr and "did you mean 'Environment'" in proc.stderr


def test_policy_effective_export_and_lint(base_env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "root.json"
    root.write_text(json.dumps({"tags": {"costcenter": {
        "tag_key": {"@@assign": "CostCenter"}, "tag_value": {"@@assign": ["100", "200"]},
        "enforced_for": {"@@assign": ["ec2:instance"]}}}}))
    ou = tmp_path / "ou.json"
    ou.write_text(json.dumps({"tags": {"costcenter": {"tag_value": {"@@append": ["300*"]}}}}))
    acct = tmp_path / "acct.json"
    acct.write_text(json.dumps({"tags": {"project": {"tag_key": {"@@assign": "Project"}}}}))
    proc = run(["policy", "effective", str(root), f"{ou}+{acct}"], base_env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    effective = json.loads(proc.stdout)["tags"]
    assert effective["costcenter"]["tag_value"] == ["100", "200", "300*"]
    assert effective["costcenter"]["enforced_for"] == ["ec2:instance"]
    assert effective["project"]["tag_key"] == "Project"

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"tags": {"costcenter": {"tag_value": {"@@assign": ["*@*.com"]}}}}))
    proc = run(["policy", "effective", str(bad)], base_env, timeout=60)
    assert proc.returncode == 2 and "tags.costcenter.tag_value.@@assign[0]" in proc.stderr

    example = str(ROOT / "policies/examples/default.json")
    proc = run(["policy", "export", "--to", "aws-config", "--policy", example], base_env, timeout=60)
    assert proc.returncode == 0 and "AWS::Config::ConfigRule" in proc.stdout and "note:" in proc.stderr
    proc = run(["policy", "export", "--to", "aws", "--policy", example], base_env, timeout=60)
    assert json.loads(proc.stdout)["tags"]["costcenter"]["tag_key"]["@@assign"] == "CostCenter"
    proc = run(["policy", "validate", example, "--target", "gcp"], base_env, timeout=60)
    assert proc.returncode == 2 and "gcp-key-format" in proc.stderr
