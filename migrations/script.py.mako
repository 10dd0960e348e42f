"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}
revision: str = ${repr(up_revision)}
down_revision: str | Sequence[str] | None = ${repr(down_revision)}
branch_labels: str | Sequence[str] | None = ${repr(branch_labels)}
depends_on: str | Sequence[str] | None = ${repr(depends_on)}
# What this revision does to services still on older versions (docs/deploying.md): "additive"
# if code built for the earlier revisions keeps working, else "breaking"; and the version of
# the package that first ships it. Tests refuse the revision until both are declared.
compatibility: Literal["additive", "breaking"] = "DECLARE ME"  # type: ignore[assignment]
since: str = "DECLARE ME"


def upgrade() -> None:
    """Apply this revision."""
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    """Undo this revision."""
    ${downgrades if downgrades else "pass"}
