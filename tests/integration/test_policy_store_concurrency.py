"""Registering one policy version from many processes at once (two audit slots firing in the same
minute, several gateways starting): every caller gets the version, none fails, one row is stored."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from policies.policy import load_policy
from services.db.engine import Database
from services.db.migrate import upgrade
from services.db.models import PolicyRow
from services.policy_store import register_policy


def _policy(n: int) -> dict[str, object]:
    return {"version": "1.0", "description": f"concurrency {n}",
            "required_tags": [{"name": "Owner", "description": "who answers for it"}]}


def test_concurrent_registration_of_one_version_never_fails(postgres_url: str) -> None:
    upgrade(postgres_url)
    db = Database(postgres_url)
    workers = 8
    try:
        for n in range(5):  # five rounds: a plain get-then-insert loses at least one race in practice
            policy = load_policy(_policy(n))
            barrier = threading.Barrier(workers)

            def register(_: int) -> str:
                barrier.wait()  # noqa: B023 (used within the round)
                return register_policy(db, policy, source="file:test.json").id  # noqa: B023

            with ThreadPoolExecutor(workers) as pool:
                ids = list(pool.map(register, range(workers)))
            assert set(ids) == {policy.content_hash()}
        with db.session() as s:
            assert s.scalar(select(func.count()).select_from(PolicyRow)) == 5
    finally:
        db.dispose()
