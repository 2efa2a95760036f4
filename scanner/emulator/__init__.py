"""The AWS emulator harness: moto's server in process or as a CLI, and the seeded demo organization.

Used by integration tests, benchmarks and ``finops-tags demo``; never by production code paths.
Importing this package is cheap and has no side effects: moto and boto3 load on first use.
"""

from scanner.emulator.demo_estate import (
    DEMO_REGIONS,
    MEMBER_ROLE_NAME,
    PROFILES,
    RESOURCE_TYPES,
    DemoEstate,
    SeededResource,
    estate_digest,
    seed_demo_organization,
    seed_small_estate,
)
from scanner.emulator.server import (
    MANAGEMENT_ACCOUNT_ID,
    EmulatorProcess,
    EmulatorServer,
    aws_env,
    fake_credentials,
    make_session,
)

__all__ = [
    "DEMO_REGIONS",
    "MANAGEMENT_ACCOUNT_ID",
    "MEMBER_ROLE_NAME",
    "PROFILES",
    "RESOURCE_TYPES",
    "DemoEstate",
    "EmulatorProcess",
    "EmulatorServer",
    "SeededResource",
    "aws_env",
    "estate_digest",
    "fake_credentials",
    "make_session",
    "seed_demo_organization",
    "seed_small_estate",
]
