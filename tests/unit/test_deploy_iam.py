"""deploy/iam and deploy/cloudformation: the committed IAM equals what the code calls, and is valid IAM.

The checking functions (``policy_problems``, ``drift_problems``) are the ones the tests apply to the
committed files; each is also shown failing on a broken copy, so a green run means something.
Known actions come from cfn-lint's catalog of IAM actions (AWS's Service Authorization Reference,
shipped as local data): no network.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import yaml
from botocore import xform_name
from cfnlint.api import lint as cfn_lint
from cfnlint.data import AdditionalSpecs
from cfnlint.helpers import load_resource

from scanner.providers.aws import iam_policy, registry

ROOT = Path(__file__).resolve().parents[2]
READ_ONLY = ROOT / iam_policy.READ_ONLY_FILE
MANAGEMENT = ROOT / iam_policy.MANAGEMENT_FILE
WRITER = ROOT / iam_policy.WRITER_FILE
TRUST = ROOT / iam_policy.TRUST_FILE
TEMPLATE = ROOT / iam_policy.TEMPLATE_FILE

# Actions in the member read-only policy that no resource-type collector calls. Each one is a call
# made outside the registry, and test_source_calls_outside_the_registry_are_granted proves the code
# still makes it:
READ_ONLY_EXTRAS = {
    "ec2:DescribeRegions",  # scanner/providers/aws/regions.py: the account's enabled regions
    "tag:GetResources",  # scanner/providers/aws/collect.py: tagging-API shards and ARN lookups
    "sts:GetCallerIdentity",  # scanner/providers/aws/session.py: which account the credentials are
}

# Write verbs (IAM "Write"/"Tagging"/"Permissions management" access levels start with these).
WRITE_PREFIXES = ("Put", "Create", "Delete", "Tag", "Untag", "Update", "Modify", "Add", "Remove", "Attach",
                  "Detach", "Set", "Change", "Start", "Stop", "Terminate", "Run", "Enable", "Disable", "Associate",
                  "Disassociate", "Register", "Deregister", "Reboot", "Restore", "Reset", "Revoke", "Authorize",
                  "Cancel", "Import", "Invoke", "Publish", "Send", "Apply", "Accept", "Reject", "Copy", "Replace",
                  "Purge", "Upload", "Release", "Allocate", "Pass", "Execute", "Batch", "Write", "Upgrade")
READ_PREFIXES = ("Describe", "List", "Get")
# The one non-read call of the management policy: it grants nothing by itself (the member role's
# trust policy and External ID decide), and the scanner cannot reach a member account without it.
READ_ONLY_EXCEPTIONS = {"sts:AssumeRole"}
ACTION_RE = re.compile(r"^(?P<prefix>[a-z0-9-]+):(?P<name>[A-Z][A-Za-z0-9]+)$")
SID_RE = re.compile(r"^[A-Za-z0-9]+$")
MANAGED_POLICY_MAX_CHARS = 6144  # IAM quota of one managed policy, counted without whitespace

# Files whose AWS calls are made outside the collector registry, and the boto3 services they call.
OUTSIDE_REGISTRY_FILES = ["scanner/providers/aws/collect.py", "scanner/providers/aws/regions.py",
                          "scanner/providers/aws/organization.py", "scanner/providers/aws/session.py",
                          "services/**/*.py"]
# boto3 service -> IAM prefix (the tagging API signs as "tagging" but its IAM prefix is "tag").
OUTSIDE_REGISTRY_SERVICES = {"organizations": "organizations", "ce": "ce", "sts": "sts",
                             "resourcegroupstaggingapi": "tag", "ec2": "ec2"}


@cache
def iam_catalog() -> dict[str, set[str]]:
    """IAM service prefix -> its actions, lower-cased (how the catalog stores them)."""
    raw = load_resource(AdditionalSpecs, "Policies.json")
    return {prefix: set(spec.get("Actions", {})) for prefix, spec in raw.items()}


def actions_of(doc: Mapping[str, Any]) -> set[str]:
    found: set[str] = set()
    for statement in doc.get("Statement", []):
        action = statement.get("Action", [])
        found.update([action] if isinstance(action, str) else action)
    return found


def policy_problems(doc: Any, *, read_only: bool) -> list[str]:
    """Everything that makes ``doc`` an invalid IAM identity policy, or a write in a read-only one."""
    if not isinstance(doc, dict):
        return ["policy is not a JSON object"]
    problems = []
    if doc.get("Version") != "2012-10-17":
        problems.append(f"Version is {doc.get('Version')!r}, not '2012-10-17'")
    statements = doc.get("Statement")
    if not isinstance(statements, list) or not statements:
        return [*problems, "Statement must be a non-empty list"]
    sids = [s.get("Sid") for s in statements if isinstance(s, dict)]
    if len(sids) != len(set(sids)):
        problems.append(f"duplicate Sid in {sids}")
    for i, st in enumerate(statements):
        where = f"Statement[{i}]"
        if not isinstance(st, dict):
            problems.append(f"{where} is not an object")
            continue
        unknown = set(st) - {"Sid", "Effect", "Action", "Resource", "Principal", "Condition"}
        if unknown:
            problems.append(f"{where}: unknown keys {sorted(unknown)}")
        if "Sid" in st and not SID_RE.match(str(st["Sid"])):
            problems.append(f"{where}: Sid {st['Sid']!r} must be alphanumeric")
        if st.get("Effect") != "Allow":
            problems.append(f"{where}: Effect is {st.get('Effect')!r}, expected 'Allow'")
        if "Resource" not in st and "Principal" not in st:
            problems.append(f"{where}: Resource is missing")
        actions = st.get("Action")
        if isinstance(actions, str):
            actions = [actions]
        if not isinstance(actions, list) or not actions:
            problems.append(f"{where}: Action must be a non-empty list")
            continue
        if len(actions) != len(set(actions)):
            problems.append(f"{where}: duplicate actions")
        for action in actions:
            problems.extend(f"{where}: {p}" for p in action_problems(action, read_only=read_only))
    size = len(re.sub(r"\s", "", json.dumps(doc)))
    if size > MANAGED_POLICY_MAX_CHARS:
        problems.append(f"policy has {size} non-whitespace characters; IAM allows {MANAGED_POLICY_MAX_CHARS}")
    return problems


def action_problems(action: Any, *, read_only: bool) -> list[str]:
    m = ACTION_RE.match(action) if isinstance(action, str) else None
    if m is None:
        return [f"{action!r} is not of the form service:Operation"]
    prefix, name = m["prefix"], m["name"]
    catalog = iam_catalog()
    if prefix not in catalog:
        return [f"{action}: {prefix!r} is not an IAM service prefix"]
    problems = []
    if name.lower() not in catalog[prefix]:
        problems.append(f"{action}: {prefix} has no IAM action {name}")
    if read_only and action not in READ_ONLY_EXCEPTIONS:
        if name.startswith(WRITE_PREFIXES):
            problems.append(f"{action}: a write action in a read-only policy")
        elif not name.startswith(READ_PREFIXES):
            problems.append(f"{action}: not a Describe/List/Get action")
    return problems


def drift_problems(doc: Mapping[str, Any], expected: Iterable[str], allowed_extras: Iterable[str] = ()) -> list[str]:
    """Actions the code needs that ``doc`` lacks, and actions ``doc`` grants that nothing needs."""
    granted, wanted = actions_of(doc), set(expected)
    problems = [f"missing {a}: the code calls it" for a in sorted(wanted - granted)]
    problems += [f"unexpected {a}: no collector calls it and it is not allow-listed"
                 for a in sorted(granted - wanted - set(allowed_extras))]
    return problems


def load(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return result


def template() -> dict[str, Any]:
    result: dict[str, Any] = yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))
    return result


# ------------------------------------------------------------------------------------ committed output


def test_committed_files_are_the_generated_output() -> None:
    assert iam_policy.stale_files(ROOT) == [], "run `make iam-policy` and commit deploy/"


def test_check_cli_reports_a_stale_file(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    cmd = [sys.executable, "-m", "scanner.providers.aws.iam_policy", "--check", "--root", str(tmp_path)]
    ok = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    edited = load(tmp_path / iam_policy.READ_ONLY_FILE)
    edited["Statement"][0]["Action"].remove("ec2:DescribeInstances")
    (tmp_path / iam_policy.READ_ONLY_FILE).write_text(json.dumps(edited, indent=2) + "\n", encoding="utf-8")
    stale = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert stale.returncode == 1
    assert f"stale: {iam_policy.READ_ONLY_FILE}" in stale.stderr and "make iam-policy" in stale.stderr
    rewrite = [sys.executable, "-m", "scanner.providers.aws.iam_policy", "--write", "--root", str(tmp_path)]
    assert subprocess.run(rewrite, cwd=ROOT, capture_output=True, timeout=60).returncode == 0
    assert subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=60).returncode == 0


# ---------------------------------------------------------------------------------- drift vs. the code


def test_read_only_policy_has_exactly_the_registry_actions() -> None:
    expected = registry.iam_actions(include_discovery=False)
    assert drift_problems(load(READ_ONLY), expected, READ_ONLY_EXTRAS) == []
    # Every allow-listed extra is really granted, and is what the registry calls its discovery calls.
    assert actions_of(load(READ_ONLY)) >= READ_ONLY_EXTRAS
    assert set(registry.DISCOVERY_IAM_ACTIONS) == READ_ONLY_EXTRAS


def test_drift_check_fails_on_a_missing_or_an_extra_action() -> None:
    expected = registry.iam_actions(include_discovery=False)
    missing = copy.deepcopy(load(READ_ONLY))
    missing["Statement"][0]["Action"].remove("kms:ListResourceTags")
    assert drift_problems(missing, expected, READ_ONLY_EXTRAS) == ["missing kms:ListResourceTags: the code calls it"]
    extra = copy.deepcopy(load(READ_ONLY))
    extra["Statement"][1]["Action"].append("ec2:DescribeImages")
    assert drift_problems(extra, expected, READ_ONLY_EXTRAS) == [
        "unexpected ec2:DescribeImages: no collector calls it and it is not allow-listed"]
    # A type whose collector gains a call is caught too (the registry is the source of truth).
    assert drift_problems(load(READ_ONLY), [*expected, "sqs:GetQueueAttributes"], READ_ONLY_EXTRAS) == [
        "missing sqs:GetQueueAttributes: the code calls it"]


def _source_calls() -> dict[str, set[str]]:
    """IAM action -> files that call it, for AWS calls made outside the registry (botocore's operation
    names found as ``.snake_name`` attribute access or a quoted operation name)."""
    session = botocore.session.get_session()
    files = sorted({p for pattern in OUTSIDE_REGISTRY_FILES for p in ROOT.glob(pattern) if "migrations" not in p.parts})
    texts = {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in files}
    calls: dict[str, set[str]] = {}
    for service, prefix in OUTSIDE_REGISTRY_SERVICES.items():
        for op in session.get_service_model(service).operation_names:
            pattern = re.compile(rf"\.{xform_name(op)}\b|[\"']{xform_name(op)}[\"']|[\"']{op}[\"']")
            for name, text in texts.items():
                if pattern.search(text):
                    calls.setdefault(f"{prefix}:{op}", set()).add(name)
    return calls


def test_source_calls_outside_the_registry_are_granted() -> None:
    calls = _source_calls()
    read_only, management, writer = actions_of(load(READ_ONLY)), actions_of(load(MANAGEMENT)), actions_of(load(WRITER))
    for action, files in sorted(calls.items()):
        if files == {"services/tagging.py"}:
            assert action in writer, f"{action} (services/tagging.py) is not in {WRITER.name}"
        else:
            assert action in read_only | management, f"{action} ({sorted(files)}) is in no read policy"
    # ...and the other way: nothing in the management policy or the tagging API statement is unused.
    for action in sorted(management - READ_ONLY_EXCEPTIONS):
        assert action in calls, f"{action} is granted in {MANAGEMENT.name} but no code calls it"
    assert "sts:AssumeRole" in calls
    assert set(calls) >= READ_ONLY_EXTRAS
    assert set(iam_policy.TAGGING_API_ACTIONS) <= set(calls)
    declared = set(iam_policy.ORGANIZATION_READ_ACTIONS) | set(iam_policy.COST_READ_ACTIONS)
    assert declared == management - READ_ONLY_EXCEPTIONS


def test_writer_policy_covers_every_registered_type() -> None:
    assert set(iam_policy.TAG_WRITE_ACTIONS) == set(registry.all_types()), (
        "every registered type needs its tag/untag actions in iam_policy.TAG_WRITE_ACTIONS")
    expected = {*iam_policy.TAGGING_API_ACTIONS, *iam_policy.tag_write_actions()}
    assert drift_problems(load(WRITER), expected) == []
    for resource_type, actions in iam_policy.TAG_WRITE_ACTIONS.items():
        # Same IAM prefix as the type's read actions: the mapping names the right service.
        prefix = registry.get(resource_type).iam_actions[0].split(":")[0]
        assert {a.split(":")[0] for a in actions} == {prefix}, resource_type
    # The writer touches tags and nothing else.
    for action in actions_of(load(WRITER)):
        assert "tag" in action.split(":")[1].lower() or action == "tag:GetResources", f"{action} is not a tag action"


def test_writer_policy_refuses_a_type_without_tag_actions(monkeypatch: pytest.MonkeyPatch) -> None:
    trimmed = {k: v for k, v in iam_policy.TAG_WRITE_ACTIONS.items() if k != "sqs:queue"}
    monkeypatch.setattr(iam_policy, "TAG_WRITE_ACTIONS", trimmed)
    with pytest.raises(ValueError, match=r"no entry for sqs:queue: add the service's tag and untag IAM actions"):
        iam_policy.tag_write_actions()


# ------------------------------------------------------------------------------------------ validity


@pytest.mark.parametrize(("path", "read_only"), [(READ_ONLY, True), (MANAGEMENT, True), (WRITER, False)],
                         ids=["read-only", "management", "writer"])
def test_policy_is_valid_iam(path: Path, read_only: bool) -> None:
    assert policy_problems(load(path), read_only=read_only) == []
    for st in load(path)["Statement"]:
        assert st["Resource"] == "*" or st["Action"] == ["sts:AssumeRole"]


def test_validity_check_fails_on_broken_policies() -> None:
    good = load(READ_ONLY)

    def broken(edit: Any) -> list[str]:
        doc = copy.deepcopy(good)
        edit(doc)
        return policy_problems(doc, read_only=True)

    assert broken(lambda d: d.update(Version="2008-10-17")) == ["Version is '2008-10-17', not '2012-10-17'"]
    assert broken(lambda d: d["Statement"][0].pop("Resource")) == ["Statement[0]: Resource is missing"]
    assert broken(lambda d: d["Statement"][0].update(Effect="Deny")) == [
        "Statement[0]: Effect is 'Deny', expected 'Allow'"]
    assert broken(lambda d: d["Statement"][1].update(Sid="Account-Discovery")) == [
        "Statement[1]: Sid 'Account-Discovery' must be alphanumeric"]
    assert broken(lambda d: d["Statement"][1]["Action"].append("ec2:CreateTags")) == [
        "Statement[1]: ec2:CreateTags: a write action in a read-only policy"]
    assert broken(lambda d: d["Statement"][1]["Action"].append("s3:PutBucketTagging")) == [
        "Statement[1]: s3:PutBucketTagging: a write action in a read-only policy"]
    assert broken(lambda d: d["Statement"][1]["Action"].append("ec2:describeinstances")) == [
        "Statement[1]: 'ec2:describeinstances' is not of the form service:Operation"]
    assert broken(lambda d: d["Statement"][1]["Action"].append("elbv2:DescribeTags")) == [
        "Statement[1]: elbv2:DescribeTags: 'elbv2' is not an IAM service prefix"]
    assert broken(lambda d: d["Statement"][1]["Action"].append("s3:ListBuckets")) == [
        "Statement[1]: s3:ListBuckets: s3 has no IAM action ListBuckets"]
    assert broken(lambda d: d["Statement"][1]["Action"].append("*")) == [
        "Statement[1]: '*' is not of the form service:Operation"]
    assert broken(lambda d: d["Statement"][0]["Action"].extend(["ec2:DescribeImages"] * 800))[-1].startswith(
        "policy has ")
    # The writer's actions are writes: the read-only check rejects that policy outright.
    assert any("a write action" in p for p in policy_problems(load(WRITER), read_only=True))


def test_trust_policy_requires_the_external_id() -> None:
    trust = load(TRUST)
    [statement] = trust["Statement"]
    assert trust["Version"] == "2012-10-17"
    assert statement["Effect"] == "Allow" and statement["Action"] == "sts:AssumeRole"
    assert statement["Principal"] == {"AWS": iam_policy.PRINCIPAL_PLACEHOLDER}
    assert statement["Condition"] == {"StringEquals": {"sts:ExternalId": iam_policy.EXTERNAL_ID_PLACEHOLDER}}
    assert "REPLACE" in statement["Principal"]["AWS"] and "REPLACE" in iam_policy.EXTERNAL_ID_PLACEHOLDER


# ------------------------------------------------------------------------------- CloudFormation template


def cfn_matches(text: str) -> list[str]:
    """Every cfn-lint match (errors, warnings and informational) of a template text."""
    return [f"{m.rule.id} {m.message} ({m.path})" for m in cfn_lint(text, regions=["us-east-1", "eu-west-1"])]


def test_template_passes_cfn_lint() -> None:
    assert cfn_matches(TEMPLATE.read_text(encoding="utf-8")) == []


def test_cfn_lint_check_fails_on_a_broken_template() -> None:
    broken = template()
    broken["Resources"]["ScannerRole"]["Properties"]["ManagedPolicyArns"] = [{"Ref": "NoSuchPolicy"}]
    broken["Resources"]["ScannerReadOnlyPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]["Effect"] = "Maybe"
    broken["Resources"]["ScannerRole"]["Properties"]["MaxSessionDuration"] = 60
    errors = [m for m in cfn_matches(json.dumps(broken)) if m.startswith("E")]
    assert any("NoSuchPolicy" in e for e in errors) and any("MaxSessionDuration" in e for e in errors), errors
    assert any("'Maybe'" in e for e in errors), errors


def test_template_policies_equal_the_committed_json() -> None:
    resources = template()["Resources"]
    scanner = resources["ScannerRole"]["Properties"]
    read_only = resources["ScannerReadOnlyPolicy"]
    assert read_only["Type"] == "AWS::IAM::ManagedPolicy" and "Condition" not in read_only
    assert read_only["Properties"]["PolicyDocument"] == load(READ_ONLY)
    assert read_only["Properties"]["Roles"] == {"Fn::If": ["CreateWriterRole",
                                                           [{"Ref": "ScannerRole"}, {"Ref": "TaggingWriterRole"}],
                                                           [{"Ref": "ScannerRole"}]]}
    writer_policy = resources["TaggingWriterPolicy"]
    assert writer_policy["Type"] == "AWS::IAM::ManagedPolicy" and writer_policy["Condition"] == "CreateWriterRole"
    assert writer_policy["Properties"]["PolicyDocument"] == load(WRITER)
    assert writer_policy["Properties"]["Roles"] == [{"Ref": "TaggingWriterRole"}]
    writer = resources["TaggingWriterRole"]
    assert writer["Condition"] == "CreateWriterRole"
    # No other grant hides in the roles themselves.
    for role in (scanner, writer["Properties"]):
        assert not {"Policies", "ManagedPolicyArns", "PermissionsBoundary"} & set(role)
    # Trust: the committed trust policy with the placeholders bound to parameters.
    expected_trust = load(TRUST)
    statement = expected_trust["Statement"][0]
    statement["Principal"]["AWS"] = {"Ref": "ScannerPrincipalArn"}
    statement["Condition"]["StringEquals"]["sts:ExternalId"] = {"Ref": "ExternalId"}
    assert scanner["AssumeRolePolicyDocument"] == expected_trust
    writer_trust = writer["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert writer_trust["Condition"] == statement["Condition"]
    assert writer_trust["Principal"]["AWS"] == {"Fn::If": ["SeparateWriterPrincipal",
                                                          {"Ref": "TaggingWriterPrincipalArn"},
                                                          {"Ref": "ScannerPrincipalArn"}]}


def test_template_parameters_and_outputs() -> None:
    t = template()
    params = t["Parameters"]
    assert params["RoleName"]["Default"] == "FinOpsTagComplianceScanner"
    assert "Default" not in params["ScannerPrincipalArn"]
    assert params["ExternalId"]["NoEcho"] is True and params["ExternalId"]["MinLength"] >= 2
    assert "Default" not in params["ExternalId"]
    assert params["EnableTaggingWriter"]["Default"] == "false"
    assert t["Conditions"]["CreateWriterRole"] == {"Fn::Equals": [{"Ref": "EnableTaggingWriter"}, "true"]}
    assert t["Outputs"]["ScannerRoleArn"]["Value"] == {"Fn::GetAtt": ["ScannerRole", "Arn"]}
    assert t["Outputs"]["TaggingWriterRoleArn"]["Condition"] == "CreateWriterRole"
    # The role lasts as long as the session the scanner asks for (scanner.providers.aws.session).
    from scanner.providers.aws.session import ASSUME_ROLE_DURATION_S
    assert t["Resources"]["ScannerRole"]["Properties"]["MaxSessionDuration"] >= ASSUME_ROLE_DURATION_S
    principal = re.compile(params["ScannerPrincipalArn"]["AllowedPattern"])
    assert principal.fullmatch("arn:aws:iam::111122223333:role/finops-scanner")
    assert not principal.fullmatch("111122223333")


def test_management_policy_assumes_the_template_role() -> None:
    [assume] = [s for s in load(MANAGEMENT)["Statement"] if s["Action"] == ["sts:AssumeRole"]]
    role = template()["Parameters"]["RoleName"]["Default"]
    assert assume["Resource"] == f"arn:aws:iam::*:role/{role}"


def test_readme_documents_every_file_and_setting() -> None:
    from services.config import Settings

    readme = (ROOT / "deploy" / "README.md").read_text(encoding="utf-8")
    for rel in iam_policy.rendered_files():
        assert rel.removeprefix("deploy/") in readme, f"deploy/README.md does not mention {rel}"
    for setting in ("FINOPS_AWS_ROLE_NAME", "FINOPS_AWS_EXTERNAL_ID", "FINOPS_AWS_ROLE_ARN_TEMPLATE"):
        assert setting in readme
        assert setting.removeprefix("FINOPS_").lower() in Settings.model_fields, f"{setting} is not a setting"
    assert "--permission-model SERVICE_MANAGED" in readme and "OrganizationalUnitIds=" in readme
