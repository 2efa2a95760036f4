"""A FOCUS 1.0 cost export for the demo organization, so the demo can price its tagging gap.

The emulator bills nothing, so the demo writes what a Data Exports FOCUS file would hold for the
seeded resources: one usage row per resource for one month, priced by type from a fixed seed (same
estate, same bill), with the resource's own tags as FOCUS ``Tags``, plus the rows no tag can
attribute (tax, a support charge without a ResourceId, a credit). EC2 rows name resources by bare id,
as AWS's CUR does; the others by ARN.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterable
from datetime import date, timedelta
from pathlib import Path

from scanner.emulator.demo_estate import SeededResource

#: Monthly price range (USD) per resource type; types not listed cost 1-10.
PRICE_RANGES: dict[str, tuple[float, float]] = {
    "ec2:instance": (30, 450), "ec2:volume": (4, 60), "ec2:snapshot": (1, 25), "ec2:elastic-ip": (3, 4),
    "ec2:natgateway": (33, 90), "s3:bucket": (1, 180), "rds:db": (90, 900), "rds:cluster": (200, 1200),
    "lambda:function": (0, 40), "dynamodb:table": (2, 150), "elasticloadbalancing:loadbalancer": (18, 60),
    "ecs:cluster": (0, 5), "kinesis:stream": (11, 45), "logs:log-group": (0, 30),
}
SERVICE_NAMES: dict[str, str] = {
    "ec2": "Amazon Elastic Compute Cloud", "s3": "Amazon Simple Storage Service",
    "rds": "Amazon Relational Database Service", "lambda": "AWS Lambda", "dynamodb": "Amazon DynamoDB",
    "sqs": "Amazon Simple Queue Service", "sns": "Amazon Simple Notification Service", "logs": "Amazon CloudWatch",
    "kms": "AWS Key Management Service", "secretsmanager": "AWS Secrets Manager",
    "ecr": "Amazon EC2 Container Registry (ECR)", "kinesis": "Amazon Kinesis",
    "elasticloadbalancing": "Elastic Load Balancing", "states": "AWS Step Functions",
    "ecs": "Amazon Elastic Container Service",
}
COLUMNS = ("BillingAccountId", "SubAccountId", "ProviderName", "BillingPeriodStart", "BillingPeriodEnd",
           "ChargePeriodStart", "ChargePeriodEnd", "ChargeCategory", "ChargeDescription", "ResourceId",
           "ServiceName", "RegionId", "BillingCurrency", "BilledCost", "EffectiveCost", "ListCost", "Tags")


def _month_bounds(today: date) -> tuple[str, str]:
    end = today.replace(day=1)
    start = (end - timedelta(days=1)).replace(day=1)
    return f"{start.isoformat()}T00:00:00Z", f"{end.isoformat()}T00:00:00Z"


def write_demo_focus(resources: Iterable[SeededResource], path: Path, *, payer_account: str,
                     today: date | None = None, seed: int = 42) -> Path:
    """Write the demo's FOCUS export to ``path`` (CSV) for last month; returns ``path``."""
    rng = random.Random(seed)
    start, end = _month_bounds(today or date.today())
    rows: list[dict[str, str]] = []
    accounts: set[str] = set()

    def row(account: str, category: str, description: str, resource_id: str, service: str, region: str,
            cost: float, tags: dict[str, str]) -> None:
        amount = f"{cost:.4f}"
        rows.append({"BillingAccountId": payer_account, "SubAccountId": account, "ProviderName": "AWS",
                     "BillingPeriodStart": start, "BillingPeriodEnd": end, "ChargePeriodStart": start,
                     "ChargePeriodEnd": end, "ChargeCategory": category, "ChargeDescription": description,
                     "ResourceId": resource_id, "ServiceName": service, "RegionId": region,
                     "BillingCurrency": "USD", "BilledCost": amount, "EffectiveCost": amount,
                     "ListCost": f"{cost * 1.1:.4f}", "Tags": json.dumps(dict(tags)) if tags else ""})

    for r in sorted(resources, key=lambda r: r.arn):
        low, high = PRICE_RANGES.get(r.resource_type, (1, 10))
        service = r.resource_type.split(":", 1)[0]
        resource_id = r.resource_id if service == "ec2" else r.arn
        region = "" if r.region == "global" else r.region
        row(r.account_id, "Usage", f"{r.resource_type} usage", resource_id, SERVICE_NAMES.get(service, service),
            region, round(rng.uniform(low, high), 2), dict(r.tags))
        accounts.add(r.account_id)
    for account in sorted(accounts):
        row(account, "Tax", "Sales tax", "", "Tax", "", round(rng.uniform(20, 80), 2), {})
        row(account, "Usage", "AWS Support (Business)", "", "AWS Support (Business)", "", 100.0, {})
        row(account, "Credit", "Promotional credit", "", "Credits", "", -25.0, {})
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path
