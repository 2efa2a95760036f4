"""The scale estate's per-account-region mix and the benchmark's count of the fewest calls it needs."""

from __future__ import annotations

import pytest

from bench.scale import fewest_calls
from scanner.emulator.scale_estate import RESOURCE_TYPES, ScaleEstate, ScaleResource, plan_counts


@pytest.mark.parametrize("size", [1, 2, 3, 5, 10, 39, 40, 41, 100, 250])
def test_plan_counts_add_up_to_the_size_asked(size: int) -> None:
    counts = plan_counts(size)
    # An instance brings its root volume: two resources.
    assert sum(counts.values()) + counts["ec2:instance"] == size
    assert set(counts) == set(RESOURCE_TYPES)
    assert not counts["ec2:snapshot"] or counts["ec2:volume"], "a snapshot needs a data volume"


def test_default_mix_spreads_forty_resources_over_every_type() -> None:
    assert plan_counts(40) == {
        "ec2:instance": 8, "ec2:volume": 4, "ec2:snapshot": 4, "secretsmanager:secret": 4,
        "sqs:queue": 3, "sns:topic": 3, "dynamodb:table": 3, "lambda:function": 3,
    }
    with pytest.raises(ValueError, match="resources per account-region must be >= 0"):
        plan_counts(-1)


def test_fewest_calls_lists_each_type_and_reads_bulk_tags_once_per_account_region() -> None:
    accounts, regions = ["111111111111", "222222222222"], ["us-east-1", "eu-west-1"]
    resources = []
    for account in accounts:
        for region in regions:
            resources += [
                ScaleResource(f"arn:aws:ec2:{region}:{account}:instance/i-{i}", "ec2:instance", account, region, True)
                for i in range(3)
            ]
            resources += [
                ScaleResource(f"arn:aws:sqs:{region}:{account}:q{i}", "sqs:queue", account, region, i < 2)
                for i in range(3)
            ]
    estate = ScaleEstate("http://127.0.0.1:1", "123456789012", accounts, regions, 6, resources)

    fewest = fewest_calls(estate)

    # Per account: AssumeRole + DescribeRegions. Per account-region: DescribeInstances, ListQueues, and one
    # GetResources for the two tagged queues (the untagged one needs no tag call).
    assert fewest.total == 2 * 2 + 4 * 3
    assert fewest.by_kind["tag:GetResources pages (bulk tags of list-then-tag types)"] == 4
    assert fewest.chain_calls == 3
    assert fewest.max_bucket_calls == 2  # the management account's STS: one AssumeRole per member
