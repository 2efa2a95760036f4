"""What every exporter returns: named documents and the notes on what could not be expressed."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ExportResult:
    """Documents keyed by a suggested file name (JSON-ready dicts) and notes for the person exporting.

    A note says what of the policy the target cannot express (and was therefore left out or
    weakened) or what the person must fill in before deploying; an export never drops a rule silently.
    """

    documents: dict[str, object] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
