"""Prometheus instruments of this process. Cross-process totals (scans, shards, API calls) are read from
the database when /metrics is scraped, so the gateway reports what the workers did too."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

SCANS_SUBMITTED = Counter("finops_scans_submitted_total", "Scans submitted from this process", ["trigger"])
SCANS_FINISHED = Counter("finops_scans_finished_total", "Scans finalized in this process", ["status"])
SHARDS_FINISHED = Counter("finops_shards_finished_total", "Shard runs ended in this process", ["status"])
SHARD_SECONDS = Histogram("finops_shard_collect_seconds", "Time to collect one shard", ["provider"],
                          buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
API_CALLS = Counter("finops_cloud_api_calls_total", "Cloud API calls made by collectors", ["provider"])
API_RETRIES = Counter("finops_cloud_api_retries_total", "Cloud API calls retried (throttling, transient)",
                      ["provider"])
# Per API family (ec2, tagging, s3...): where the budget goes and which family the cloud throttles.
API_CALLS_BY_FAMILY = Counter("finops_cloud_api_family_calls_total", "Cloud API calls per API family",
                              ["provider", "api_family"])
API_RETRIES_BY_FAMILY = Counter("finops_cloud_api_family_retries_total", "Cloud API calls retried per API family",
                                ["provider", "api_family"])
API_THROTTLES_BY_FAMILY = Counter("finops_cloud_api_family_throttles_total",
                                  "Throttling answers (rate exceeded) per API family", ["provider", "api_family"])
TOOL_SECONDS = Histogram("finops_tool_seconds", "Latency of MCP tool and REST calls", ["channel", "name"],
                         buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
TOOL_ERRORS = Counter("finops_tool_errors_total", "MCP tool and REST calls that ended in an error",
                      ["channel", "name", "code"])
