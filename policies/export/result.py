"""What every exporter returns: named documents and the notes on what could not be expressed."""

from __future__ import annotations

from dataclasses import dataclass, field

from policies.policy import Policy


@dataclass(frozen=True, slots=True)
class ExportResult:
    """Documents keyed by a suggested file name (JSON-ready dicts) and notes for the person exporting.

    A note says what of the policy the target cannot express (and was therefore left out or
    weakened) or what the person must fill in before deploying; an export never drops a rule silently.
    """

    documents: dict[str, object] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def engine_only_notes(policy: Policy) -> list[str]:
    """Notes for the parts no export target can express; the scanner keeps checking them."""
    notes: list[str] = []
    if policy.prohibited_tags:
        notes.append(f"prohibited_tags are not exported ({', '.join(policy.prohibited_tags)})")
    notes.append("max_tags, tag_naming_rules, severities and error_for are not exported; the scanner keeps "
                 "checking them")
    return notes
