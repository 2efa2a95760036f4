"""AWS-set tags (aws:cloudformation:stack-name, ...) are not judged as user tags."""

from __future__ import annotations

from scanner.providers.aws.collectors import split_system_tags


def test_aws_prefixed_tags_are_kept_apart() -> None:
    user, system = split_system_tags({"Owner": "a@example.com", "aws:cloudformation:stack-name": "web",
                                      "AWS:autoscaling:groupName": "asg-1", "awsome": "yes"})
    assert user == {"Owner": "a@example.com", "awsome": "yes"}
    assert system == {"aws:cloudformation:stack-name": "web", "AWS:autoscaling:groupName": "asg-1"}
