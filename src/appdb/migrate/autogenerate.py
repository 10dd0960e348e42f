"""What Alembic compares with appdb's models, for autogenerate (``env.py``) and `check` alike."""

from __future__ import annotations

from typing import Any

from appdb.models import metadata

__all__ = ["include_name"]


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Let autogenerate see only the tables appdb's metadata owns.

    A service's own tables in the same database are never proposed for dropping.

    Args:
        name: The object's name.
        type_: Its kind (``table``, ``column``, ``index``, ...).
        parent_names: Alembic's names of the enclosing schema and table (unused).

    Returns:
        Whether autogenerate compares the object.
    """
    del parent_names
    if type_ == "table":
        return name in metadata.tables
    return True
