"""The revisions the installed migrations hold, for ``appdb-migrate history``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from appdb.migrate.chains import all_chains, script_directory

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Revision", "format_revisions", "history"]


@dataclass(frozen=True)
class Revision:
    """One migration script."""

    revision: str
    down_revision: str | None
    description: str
    is_head: bool
    branch_labels: tuple[str, ...] = ()
    service: str | None = None
    """The service whose chain the revision belongs to; None for appdb's own."""


def history() -> list[Revision]:
    """Every revision, appdb's chain then each registered service's, each newest first.

    Returns:
        The revisions with their descriptions; a service's carry its name in `Revision.service`.
    """
    revisions: list[Revision] = []
    for chain in all_chains():
        script = script_directory(chain)
        head_ids = set(script.get_heads())
        revisions.extend(
            Revision(
                revision=item.revision,
                down_revision=item.down_revision if isinstance(item.down_revision, str) else None,
                description=item.doc,
                is_head=item.revision in head_ids,
                branch_labels=tuple(sorted(item.branch_labels)),
                service=chain.service,
            )
            for item in script.walk_revisions()
        )
    return revisions


def format_revisions(revisions: Sequence[str]) -> str:
    """Render revision ids for humans.

    Args:
        revisions: Revision ids, as `current()` or `heads()` return them.

    Returns:
        The ids, comma-separated; ``(none)`` for an unmigrated database.
    """
    return ", ".join(revisions) or "(none)"
