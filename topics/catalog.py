"""Topic names: the public contract (docs/contracts.md), with a configurable prefix."""
from __future__ import annotations

from dataclasses import dataclass

INPUT_KINDS = ("orders", "reviews", "shares", "logins", "members", "redemptions", "admin")
OUTPUT_KINDS = ("rewards", "notifications", "dead-letters")
INTERNAL_KINDS = ("due", "devices", "referrals", "program-versions", "reward-requests", "reward-replies")
#: Operators' reward topics, compacted, keyed by reward code (catalog) or `code:import_id` (coupon-codes).
CATALOG_KINDS = ("catalog", "coupon-codes")


@dataclass(frozen=True, slots=True)
class TopicNames:
    prefix: str

    def name(self, kind: str) -> str:
        if kind not in INPUT_KINDS + OUTPUT_KINDS + INTERNAL_KINDS + CATALOG_KINDS:
            raise ValueError(f"unknown topic kind {kind!r}")
        return f"{self.prefix}{kind}"

    def kind_of(self, topic: str) -> str:
        """The kind of a topic name (`orders`, `due`, ...): the name without this prefix.

        Also used for Faust's own topics (changelogs), which keep their full name if unprefixed.
        """
        return topic[len(self.prefix):] if self.prefix and topic.startswith(self.prefix) else topic

    @property
    def inputs(self) -> dict[str, str]:
        """Input topic name -> kind."""
        return {self.name(k): k for k in INPUT_KINDS}

    def all(self) -> list[str]:
        return [self.name(k) for k in INPUT_KINDS + OUTPUT_KINDS + INTERNAL_KINDS + CATALOG_KINDS]
