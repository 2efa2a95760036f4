"""The IAM the scanner needs, built from the collector registry so that deploy/ can never drift from the code.

Four policy documents and one CloudFormation template come out of here; ``deploy/iam/*.json`` and
``deploy/cloudformation/scanner-role-stackset.yaml`` are their committed output
(``python -m scanner.providers.aws.iam_policy --write``, or ``make iam-policy``; ``--check`` fails on
stale files):

* ``scanner_read_only_policy``: every member account. The actions of every registered resource type
  (``registry.iam_actions``) plus the discovery calls made outside the collectors.
* ``scanner_management_policy``: the scanner's own principal in the management (or delegated
  administrator) account: Organizations and Cost Explorer reads, and AssumeRole into the member role.
* ``tagging_writer_policy``: the approved bulk-tagging path (``services.tagging``): the Resource
  Groups Tagging API plus the per-service tag actions it calls on the caller's behalf.
* ``scanner_trust_policy``: who may assume the member role, with an External ID.

Nothing here calls AWS; the documents are plain dicts.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from scanner.providers.aws import registry

POLICY_VERSION = "2012-10-17"
DEFAULT_ROLE_NAME = "FinOpsTagComplianceScanner"
DEFAULT_WRITER_ROLE_NAME = "FinOpsTagComplianceTagger"
# Placeholders of the committed trust policy: obviously not real, so a copy-paste without editing fails loudly.
PRINCIPAL_PLACEHOLDER = "arn:aws:iam::111111111111:role/REPLACE-WITH-SCANNER-ROLE"
EXTERNAL_ID_PLACEHOLDER = "REPLACE-WITH-EXTERNAL-ID"

# Calls the scanner makes only with the management (or delegated administrator) account's own
# credentials, outside any collector: action -> the code that makes it.
ORGANIZATION_READ_ACTIONS: Mapping[str, str] = {
    "organizations:DescribeOrganization": "services/policy_sources.py: tag policy sync says why an org is unusable",
    "organizations:ListAccounts": "organization.list_organization_accounts: accounts='all' scans and ARN lookups",
    "organizations:ListAccountsForParent": "organization.list_accounts_under: scans of an OU or root (ou-..., r-...)",
    "organizations:ListOrganizationalUnitsForParent": "organization.list_accounts_under: nested OUs of a scanned OU",
    "organizations:ListParents": "organization.ou_path_for_account: policy overrides by OU",
    "organizations:ListPolicies": "organization.list_tag_policies: tag policy import and sync",
    "organizations:DescribePolicy": "organization.list_tag_policies: the content of each tag policy",
    "organizations:ListTargetsForPolicy": "organization.list_tag_policies: where each tag policy is attached",
    "organizations:ListPoliciesForTarget": "organization.policy_path_for_account: effective tag policy per account",
}
COST_READ_ACTIONS: Mapping[str, str] = {
    "ce:GetCostAndUsage": "services/cost_explorer.py: spend per account and service, and per tag key",
    "ce:GetCostAndUsageWithResources": "services/cost_explorer.py: resource-level spend (last 14 days, opt-in)",
}

# The per-service actions the Resource Groups Tagging API calls with the caller's permissions when it
# tags or untags a resource of each registered type. tests/unit/test_deploy_iam.py requires an entry
# for every registered type, so a new collector cannot ship without its write path being granted.
# Where a service has both a legacy and a current tagging API (Kinesis, CloudWatch Logs, EFS), both
# are granted: which one the tagging API uses is not documented, and all of them only touch tags.
TAG_WRITE_ACTIONS: Mapping[str, tuple[str, ...]] = {
    "cloudfront:distribution": ("cloudfront:TagResource", "cloudfront:UntagResource"),
    "dynamodb:table": ("dynamodb:TagResource", "dynamodb:UntagResource"),
    "ec2:elastic-ip": ("ec2:CreateTags", "ec2:DeleteTags"),
    "ec2:instance": ("ec2:CreateTags", "ec2:DeleteTags"),
    "ec2:natgateway": ("ec2:CreateTags", "ec2:DeleteTags"),
    "ec2:snapshot": ("ec2:CreateTags", "ec2:DeleteTags"),
    "ec2:volume": ("ec2:CreateTags", "ec2:DeleteTags"),
    "ecr:repository": ("ecr:TagResource", "ecr:UntagResource"),
    "ecs:cluster": ("ecs:TagResource", "ecs:UntagResource"),
    "ecs:service": ("ecs:TagResource", "ecs:UntagResource"),
    "eks:cluster": ("eks:TagResource", "eks:UntagResource"),
    "elasticache:cluster": ("elasticache:AddTagsToResource", "elasticache:RemoveTagsFromResource"),
    "elasticfilesystem:file-system": ("elasticfilesystem:TagResource", "elasticfilesystem:UntagResource",
                                      "elasticfilesystem:CreateTags", "elasticfilesystem:DeleteTags"),
    "elasticloadbalancing:loadbalancer": ("elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"),
    "elasticloadbalancing:targetgroup": ("elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"),
    "kinesis:stream": ("kinesis:AddTagsToStream", "kinesis:RemoveTagsFromStream",
                       "kinesis:TagResource", "kinesis:UntagResource"),
    "kms:key": ("kms:TagResource", "kms:UntagResource"),
    "lambda:function": ("lambda:TagResource", "lambda:UntagResource"),
    "logs:log-group": ("logs:TagResource", "logs:UntagResource", "logs:TagLogGroup", "logs:UntagLogGroup"),
    "opensearch:domain": ("es:AddTags", "es:RemoveTags"),
    "rds:cluster": ("rds:AddTagsToResource", "rds:RemoveTagsFromResource"),
    "rds:db": ("rds:AddTagsToResource", "rds:RemoveTagsFromResource"),
    "route53:hostedzone": ("route53:ChangeTagsForResource",),
    # PutBucketTagging replaces the whole tag set, so the tagging API reads the current set first.
    "s3:bucket": ("s3:GetBucketTagging", "s3:PutBucketTagging"),
    "secretsmanager:secret": ("secretsmanager:TagResource", "secretsmanager:UntagResource"),
    "sns:topic": ("sns:TagResource", "sns:UntagResource"),
    "sqs:queue": ("sqs:TagQueue", "sqs:UntagQueue"),
    "states:stateMachine": ("states:TagResource", "states:UntagResource"),
}
# services/tagging.py: GetResources reads the current values (previews, rollbacks, verification);
# TagResources / UntagResources write them.
TAGGING_API_ACTIONS = ("tag:GetResources", "tag:TagResources", "tag:UntagResources")

REPO_ROOT = Path(__file__).resolve().parents[3]
READ_ONLY_FILE = "deploy/iam/scanner-read-only-policy.json"
MANAGEMENT_FILE = "deploy/iam/scanner-management-policy.json"
WRITER_FILE = "deploy/iam/tagging-writer-policy.json"
TRUST_FILE = "deploy/iam/scanner-trust-policy.json"
TEMPLATE_FILE = "deploy/cloudformation/scanner-role-stackset.yaml"


def _statement(sid: str, actions: Iterable[str], resource: str | list[str] = "*") -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": sorted(set(actions)), "Resource": resource}


def _document(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": POLICY_VERSION, "Statement": list(statements)}


def scanner_read_only_policy() -> dict[str, Any]:
    """Read-only policy for every scanned account: the collectors' calls plus region/identity discovery.

    The inventory calls are List/Describe/Get operations that mostly take no resource ARN (or list every
    resource of the account), so ``Resource`` is ``*``; the policy grants no write.
    """
    inventory = registry.iam_actions(include_discovery=False)
    return _document(
        _statement("ResourceInventory", inventory),
        _statement("AccountDiscovery", registry.DISCOVERY_IAM_ACTIONS),
    )


def scanner_management_policy(role_name: str = DEFAULT_ROLE_NAME, partition: str = "aws") -> dict[str, Any]:
    """Policy of the scanner's own principal in the management or delegated administrator account.

    It reads the organization and Cost Explorer, and may assume ``role_name`` in every account. The
    account it runs in is scanned with its own credentials, so attach the read-only policy too when
    that account holds resources to scan.
    """
    return _document(
        _statement("OrganizationRead", ORGANIZATION_READ_ACTIONS),
        _statement("CostExplorerRead", COST_READ_ACTIONS),
        _statement("AssumeScannerRoleInMembers", ["sts:AssumeRole"], f"arn:{partition}:iam::*:role/{role_name}"),
    )


def tag_write_actions() -> list[str]:
    """The per-service tag actions of every registered type, sorted."""
    missing = [t for t in registry.all_types() if t not in TAG_WRITE_ACTIONS]
    if missing:
        raise ValueError(f"TAG_WRITE_ACTIONS has no entry for {', '.join(missing)}: add the service's "
                         "tag and untag IAM actions in scanner/providers/aws/iam_policy.py")
    return sorted({a for t in registry.all_types() for a in TAG_WRITE_ACTIONS[t]})


def tagging_writer_policy() -> dict[str, Any]:
    """Policy of the approved bulk-tagging path: the tagging API and the per-service tag actions it needs."""
    return _document(
        _statement("TaggingApi", TAGGING_API_ACTIONS),
        _statement("ServiceTagWrites", tag_write_actions()),
    )


def scanner_trust_policy(principal_arn: str | Mapping[str, Any] = PRINCIPAL_PLACEHOLDER,
                         external_id: str | Mapping[str, Any] = EXTERNAL_ID_PLACEHOLDER) -> dict[str, Any]:
    """Trust policy of the member role: only ``principal_arn``, and only with the shared External ID.

    Either value may be a CloudFormation expression (``{"Ref": "ExternalId"}``) for the template.
    """
    return _document({
        "Sid": "ScannerAssumesWithExternalId",
        "Effect": "Allow",
        "Principal": {"AWS": principal_arn},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
    })


def scanner_role_template() -> dict[str, Any]:
    """CloudFormation template for a service-managed StackSet: the scanner role (and an optional tagger
    role) in every member account, with the generated policies inline so template and JSON agree."""
    def trust(principal: Mapping[str, Any]) -> dict[str, Any]:
        return scanner_trust_policy(principal_arn=principal, external_id={"Ref": "ExternalId"})

    writer_principal = {"Fn::If": ["SeparateWriterPrincipal", {"Ref": "TaggingWriterPrincipalArn"},
                                   {"Ref": "ScannerPrincipalArn"}]}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "finops-tag-compliance scanner role (and optional tagging writer role) per member account",
        "Parameters": {
            "RoleName": {"Type": "String", "Default": DEFAULT_ROLE_NAME, "AllowedPattern": r"[\w+=,.@-]{1,64}",
                         "Description": "Name of the read-only role (FINOPS_AWS_ROLE_NAME of the scanner)."},
            "ScannerPrincipalArn": {"Type": "String",
                                    "AllowedPattern": r"arn:aws[a-z-]*:iam::\d{12}:(root|role/.+|user/.+)",
                                    "Description": ("IAM principal the scanner runs as, in the management or tooling "
                                                    "account (e.g. arn:aws:iam::111122223333:role/finops-scanner).")},
            "ExternalId": {"Type": "String", "NoEcho": True, "MinLength": 2, "MaxLength": 1224,
                           "AllowedPattern": r"[\w+=,.@:/-]*",
                           "Description": "Shared secret the scanner sends (FINOPS_AWS_EXTERNAL_ID)."},
            "EnableTaggingWriter": {"Type": "String", "Default": "false", "AllowedValues": ["true", "false"],
                                    "Description": "Also create the role the approved bulk-tagging path assumes."},
            "WriterRoleName": {"Type": "String", "Default": DEFAULT_WRITER_ROLE_NAME,
                               "AllowedPattern": r"[\w+=,.@-]{1,64}",
                               "Description": "Name of the tagging writer role (read-only + tagging writes)."},
            "TaggingWriterPrincipalArn": {"Type": "String", "Default": "",
                                          "Description": ("Principal allowed to assume the writer role; empty "
                                                          "means ScannerPrincipalArn.")},
        },
        "Conditions": {
            "CreateWriterRole": {"Fn::Equals": [{"Ref": "EnableTaggingWriter"}, "true"]},
            "SeparateWriterPrincipal": {"Fn::Not": [{"Fn::Equals": [{"Ref": "TaggingWriterPrincipalArn"}, ""]}]},
        },
        "Resources": {
            # Managed policies rather than inline ones: each is one document the console and Access
            # Analyzer show by itself, and IAM allows 6,144 characters per managed policy.
            "ScannerReadOnlyPolicy": {
                "Type": "AWS::IAM::ManagedPolicy",
                "Properties": {
                    "Description": "finops-tag-compliance: inventory and tag reads of every scanned type (no writes).",
                    "PolicyDocument": scanner_read_only_policy(),
                    # The tagger also scans and verifies what it wrote, so it gets the reads too.
                    "Roles": {"Fn::If": ["CreateWriterRole",
                                         [{"Ref": "ScannerRole"}, {"Ref": "TaggingWriterRole"}],
                                         [{"Ref": "ScannerRole"}]]},
                },
            },
            "ScannerRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": {"Ref": "RoleName"},
                    "Description": "Assumed by finops-tag-compliance to scan this account (read-only).",
                    "MaxSessionDuration": 3600,
                    "AssumeRolePolicyDocument": trust({"Ref": "ScannerPrincipalArn"}),
                },
            },
            "TaggingWriterPolicy": {
                "Type": "AWS::IAM::ManagedPolicy",
                "Condition": "CreateWriterRole",
                "Properties": {
                    "Description": "finops-tag-compliance: apply approved tag changes (tags only).",
                    "PolicyDocument": tagging_writer_policy(),
                    "Roles": [{"Ref": "TaggingWriterRole"}],
                },
            },
            "TaggingWriterRole": {
                "Type": "AWS::IAM::Role",
                "Condition": "CreateWriterRole",
                "Properties": {
                    "RoleName": {"Ref": "WriterRoleName"},
                    "Description": "Assumed by finops-tag-compliance to apply approved tag changes.",
                    "MaxSessionDuration": 3600,
                    "AssumeRolePolicyDocument": trust(writer_principal),
                },
            },
        },
        "Outputs": {
            "ScannerRoleArn": {"Description": "ARN of the read-only scanner role.",
                               "Value": {"Fn::GetAtt": ["ScannerRole", "Arn"]}},
            "TaggingWriterRoleArn": {"Condition": "CreateWriterRole",
                                     "Description": "ARN of the tagging writer role.",
                                     "Value": {"Fn::GetAtt": ["TaggingWriterRole", "Arn"]}},
        },
    }


def _json(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2) + "\n"


def _yaml(doc: Mapping[str, Any]) -> str:
    import yaml  # only the generator needs it (present through moto[server] and cfn-lint)

    header = ("# Generated by `python -m scanner.providers.aws.iam_policy --write` (make iam-policy): do not edit.\n"
              "# Deploy as a SERVICE_MANAGED StackSet to the member OUs; see deploy/README.md.\n")
    class NoAliases(yaml.SafeDumper):  # type: ignore[misc]
        # CloudFormation reads plain YAML best: a shared sub-document is written out again, not as &id001.
        def ignore_aliases(self, data: Any) -> bool:
            return True

    body: str = yaml.dump(dict(doc), Dumper=NoAliases, sort_keys=False, width=120, default_flow_style=False)
    return header + body


def rendered_files() -> dict[str, str]:
    """Path relative to the repository -> the exact committed text."""
    return {
        READ_ONLY_FILE: _json(scanner_read_only_policy()),
        MANAGEMENT_FILE: _json(scanner_management_policy()),
        WRITER_FILE: _json(tagging_writer_policy()),
        TRUST_FILE: _json(scanner_trust_policy()),
        TEMPLATE_FILE: _yaml(scanner_role_template()),
    }


def stale_files(root: Path = REPO_ROOT) -> list[str]:
    """Committed files under ``root`` that are missing or differ from what the registry generates now."""
    stale = []
    for rel, text in rendered_files().items():
        path = root / rel
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(rel)
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scanner.providers.aws.iam_policy",
                                     description="Generate the IAM policies and StackSet template in deploy/.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write the files under --root")
    mode.add_argument("--check", action="store_true", help="exit 1 when a committed file is stale")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="repository root (default: this checkout)")
    parser.add_argument("--print", dest="show", choices=sorted(rendered_files()), help="print one file")
    args = parser.parse_args(argv)
    if args.show:
        sys.stdout.write(rendered_files()[args.show])
        return 0
    if args.write:
        for rel, text in rendered_files().items():
            path = args.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {rel}")
        return 0
    if not (args.root / "deploy").is_dir():
        print(f"error: --root {args.root} has no deploy/ folder; pass the repository root", file=sys.stderr)
        return 2
    stale = stale_files(args.root)
    for rel in stale:
        print(f"stale: {rel} (run `make iam-policy` and commit the result)", file=sys.stderr)
    if not stale:
        print("deploy/ IAM files are up to date")
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
