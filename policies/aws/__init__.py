"""AWS Organizations tag policies: parse (:mod:`.tag_policy`), inherit (:mod:`.inheritance`), convert
to and from our policy format (:mod:`.convert`), with the supported resource types as data
(:mod:`.resource_types`). Pure: the only file read is the package's own data file."""

from policies.aws.convert import from_policy, to_policy
from policies.aws.inheritance import EffectiveTag, EffectiveTagPolicy, IgnoredOperation, effective_policy
from policies.aws.resource_types import (
    compress_resource_types,
    expand_resource_types,
    is_supported_resource_type,
    supported_resource_types,
)
from policies.aws.tag_policy import ListSetting, TagKeyPolicy, TagKeySetting, TagPolicyDoc, parse_tag_policy

__all__ = [
    "EffectiveTag",
    "EffectiveTagPolicy",
    "IgnoredOperation",
    "ListSetting",
    "TagKeyPolicy",
    "TagKeySetting",
    "TagPolicyDoc",
    "compress_resource_types",
    "effective_policy",
    "expand_resource_types",
    "from_policy",
    "is_supported_resource_type",
    "parse_tag_policy",
    "supported_resource_types",
    "to_policy",
]
