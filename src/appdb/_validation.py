"""Argument checks shared by the operations: pydantic in, `InvalidInputError` out."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from appdb.exceptions import InvalidInputError

__all__ = ["Arguments", "validated"]

_ModelT = TypeVar("_ModelT", bound=BaseModel)


class Arguments(BaseModel):
    """Base of the models that check an operation's arguments.

    Strict: an id passed as ``"42"``, ``42.0`` or ``True`` is a bug in the caller, not a value.
    """

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")


def validated(model: type[_ModelT], **arguments: object) -> _ModelT:
    """Check an operation's arguments against `model`.

    Args:
        model: The pydantic model whose field names are the operation's argument names.
        **arguments: The arguments as the caller passed them.

    Returns:
        The checked (and normalised, e.g. lower-cased email) arguments.

    Raises:
        InvalidInputError: An argument is malformed, out of range or too long.
    """
    try:
        return model.model_validate(arguments)
    except ValidationError as exc:
        # pydantic's own message repeats the input, which may be a password, so the error is
        # raised outside this block: it must not even be the __context__.
        error = InvalidInputError(_describe(exc))
    raise error


def _describe(exc: ValidationError) -> str:
    """One clause per bad argument, naming it, without its value."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False, include_context=False):
        where = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]
        ).lstrip(".")
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "invalid argument " + "; ".join(problems)
