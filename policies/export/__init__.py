"""Export our tagging policy to what other tools enforce: AWS Config rules, Azure Policy.

Pure like the rest of ``policies``: exporters build JSON-ready dicts and never write files. Each
returns an :class:`ExportResult` whose notes list what the target cannot express. The AWS
Organizations tag-policy export lives in ``policies.aws.convert``.
"""

from __future__ import annotations

from typing import Literal

from policies.export.aws_config import export_aws_config
from policies.export.azure import export_azure
from policies.export.result import ExportResult
from policies.policy import Policy

__all__ = ["ExportResult", "ExportTarget", "export_aws_config", "export_azure", "export_policy"]

ExportTarget = Literal["aws-config", "azure"]


def export_policy(policy: Policy, to: ExportTarget) -> ExportResult:
    """Export ``policy`` with the target's default options (see the target's own function for more)."""
    if to == "aws-config":
        return export_aws_config(policy)
    if to == "azure":
        return export_azure(policy)
    raise ValueError(f"unknown export target {to!r}; use 'aws-config' or 'azure'")
