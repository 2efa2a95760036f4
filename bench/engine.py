"""Throughput of ``policies.engine.evaluate`` on one core.

Run: ``.venv/bin/python -m bench.engine [--n 200000] [--json]``. Builds N synthetic resources over
ten resource types with a realistic tag mix (about 70 % compliant; the rest carry the defects seen
in real estates: missing tags, wrong key case, typos, bad formats, prohibited and odd keys) and a
six-tag policy (four required, one with a wildcard value and one with a regex, two optional).
Each of the three timed runs compiles the policy afresh so cache warm-up is part of the number.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from collections.abc import Mapping
from typing import Any

from policies.engine import compile_policy, evaluate
from policies.models import Resource
from policies.policy import Policy, load_policy

TYPES = ["ec2:instance", "ec2:volume", "s3:bucket", "rds:db", "lambda:function", "dynamodb:table",
         "ecs:service", "sqs:queue", "sns:topic", "elasticloadbalancing:loadbalancer"]
COST_CENTERS = ["Engineering", "Marketing", "Sales", "Operations", "Finance", "Data"]
ENVIRONMENTS = ["production", "staging", "development", "test"]
CLASSIFICATIONS = ["public", "internal", "confidential", "restricted"]
APPS = [f"app-{i:02d}" for i in range(50)]
USERS = [f"user{i}" for i in range(200)]
REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2"]
ACCOUNTS = [f"{100000000000 + i}" for i in range(20)]

POLICY: Mapping[str, Any] = {
    "version": "bench",
    "required_tags": [
        {"name": "CostCenter", "allowed_values": COST_CENTERS},
        {"name": "Owner", "allowed_values": ["*@example.com"]},
        {"name": "Environment", "allowed_values": ENVIRONMENTS},
        {"name": "Application", "validation_regex": "[a-z][a-z0-9-]{2,63}", "severity": "warning",
         "applies_to": ["ec2:instance", "lambda:function", "ecs:service", "rds:db", "dynamodb:table",
                        "s3:bucket", "sqs:queue", "sns:topic", "elasticloadbalancing:loadbalancer"]},
    ],
    "optional_tags": [
        {"name": "DataClassification", "allowed_values": CLASSIFICATIONS,
         "applies_to": ["s3:bucket", "rds:db", "dynamodb:table"]},
        {"name": "Project", "validation_regex": "PRJ-[0-9]{4}"},
    ],
    "prohibited_tags": ["temp*"],
    "max_tags": 50,
    "tag_naming_rules": {"case_sensitivity": True, "allow_special_characters": False,
                         "max_key_length": 128, "max_value_length": 256},
}


def _defect(rng: random.Random, tags: dict[str, str]) -> None:
    """Break the tag set the way real estates are broken."""
    kind = rng.randrange(8)
    if kind == 0:
        tags.pop(rng.choice(["CostCenter", "Owner", "Environment"]))
    elif kind == 1:
        tags["costcenter"] = tags.pop("CostCenter")
    elif kind == 2:
        tags["Environment"] = rng.choice(["prod", "Production", "dev", "stg", "qa"])
    elif kind == 3:
        tags["CostCenter"] = rng.choice(["Enginering", "marketing", "R&D", ""])
    elif kind == 4:
        tags["Owner"] = rng.choice(["alice@example.org", "bob", "team-data"])
    elif kind == 5:
        tags["Project"] = rng.choice(["prj-0042", "PRJ42", "Project X"])
    elif kind == 6:
        tags["temp-debug"] = "true"
    else:
        tags["Notes"] = "owner moved, see ticket #4411 (urgent!)"


def build_resources(n: int, *, seed: int = 7, defect_rate: float = 0.3) -> list[Resource]:
    """``n`` deterministic synthetic resources with about ``1 - defect_rate`` of them compliant."""
    rng = random.Random(seed)
    out: list[Resource] = []
    for i in range(n):
        rtype = TYPES[i % len(TYPES)]
        tags = {
            "CostCenter": rng.choice(COST_CENTERS),
            "Owner": f"{rng.choice(USERS)}@example.com",
            "Environment": rng.choice(ENVIRONMENTS),
            "Name": f"{rtype.split(':')[1]}-{i}",
        }
        if rtype not in ("ec2:volume",):
            tags["Application"] = rng.choice(APPS)
        if rng.random() < 0.4:
            tags["Project"] = f"PRJ-{rng.randrange(10000):04d}"
        if rtype in ("s3:bucket", "rds:db", "dynamodb:table") and rng.random() < 0.6:
            tags["DataClassification"] = rng.choice(CLASSIFICATIONS)
        if rng.random() < 0.3:
            tags["Team"] = rng.choice(["platform", "payments", "search", "ml"])
        if rng.random() < defect_rate:
            _defect(rng, tags)
        service, _, kind = rtype.partition(":")
        region = rng.choice(REGIONS)
        account = rng.choice(ACCOUNTS)
        rid = f"{kind}-{i:08x}"
        out.append(Resource(arn=f"arn:aws:{service}:{region}:{account}:{kind}/{rid}", resource_id=rid,
                            resource_type=rtype, account_id=account, region=region, tags=tags))
    return out


def run(n: int, repeats: int = 3) -> dict[str, Any]:
    """Time ``evaluate`` over ``n`` resources, best of ``repeats``; returns the measurements."""
    policy: Policy = load_policy(POLICY)
    resources = build_resources(n)
    best = float("inf")
    result = None
    for _ in range(repeats):
        compiled = compile_policy(policy)  # fresh caches: warm-up is part of what is measured
        start = time.perf_counter()
        result = evaluate(resources, compiled)
        best = min(best, time.perf_counter() - start)
    assert result is not None
    violations = sum(len(r.violations) for r in result.results)
    return {
        "benchmark": "policies.engine.evaluate",
        "resources": n,
        "seconds": round(best, 4),
        "resources_per_second": round(n / best),
        "in_scope": result.in_scope,
        "compliant_share": round(result.compliant / max(result.in_scope, 1), 4),
        "violations": violations,
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=200_000, help="number of synthetic resources")
    parser.add_argument("--json", action="store_true", help="also print one JSON line with the results")
    args = parser.parse_args(argv)
    m = run(args.n)
    print(f"evaluate: {m['resources']} resources in {m['seconds']:.3f} s = {m['resources_per_second']:,} "
          f"resources/s (one core, best of 3; {m['compliant_share']:.0%} compliant, "
          f"{m['violations']} violations)")
    if args.json:
        print(json.dumps(m, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
