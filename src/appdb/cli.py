"""`appdb-migrate`: argument parsing and printing over `appdb.migrate`, nothing more.

Exit codes: 0 success; 1 the operation failed or a check found a problem; 2 usage or
configuration error.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from typing import TYPE_CHECKING

from appdb.exceptions import AppDBError, ConfigurationError
from appdb.settings import DatabaseSettings

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

PROG = "appdb-migrate"


class _CheckFailedError(AppDBError):
    """A check found a problem: exit 1 with this message."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Bring a database to the schema this installed appdb expects.",
        epilog="Exit codes: 0 success, 1 failure or check found a problem, 2 usage/configuration.",
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help=(
            "database to migrate, directly (default: DATABASE_MIGRATION_URL, else DATABASE_URL, "
            "else the SQLite development file)"
        ),
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log Alembic's steps; tracebacks on errors"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def lock_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--lock-timeout",
            type=float,
            default=None,
            metavar="SECONDS",
            help="wait at most this long for a concurrent migration (default 300)",
        )

    upgrade = commands.add_parser(
        "upgrade", help="apply migrations up to REV (default heads: appdb's and services')"
    )
    upgrade.add_argument("revision", nargs="?", default="heads", metavar="REV")
    upgrade.add_argument("--sql", action="store_true", help="print the SQL instead (no server)")
    upgrade.add_argument(
        "--allow-breaking",
        action="store_true",
        help="run a breaking revision although sessions of versions it breaks are connected",
    )
    lock_option(upgrade)

    downgrade = commands.add_parser(
        "downgrade",
        help="undo appdb's migrations down to REV (or base), or a service's with SERVICE@REV",
    )
    downgrade.add_argument("revision", metavar="REV")
    downgrade.add_argument(
        "--yes", action="store_true", help="go to base although its tables hold rows (lost)"
    )
    downgrade.add_argument("--sql", action="store_true", help="print the SQL instead (no server)")
    lock_option(downgrade)

    current = commands.add_parser("current", help="show the database's revision")
    current.add_argument(
        "--check", action="store_true", help="exit 1 unless the database is at this appdb's head"
    )

    commands.add_parser(
        "history", help="list the revisions, appdb's then each service's, newest first"
    )
    commands.add_parser("heads", help="show the head revision this appdb ships")
    commands.add_parser("check", help="exit 1 and list differences between models and database")

    schema = commands.add_parser("schema", help="print the data model (Mermaid ER diagram or text)")
    schema.add_argument("--format", choices=("mermaid", "text"), default="mermaid")

    stamp = commands.add_parser("stamp", help="record REV as the revision without migrating")
    stamp.add_argument("revision", metavar="REV")
    stamp.add_argument(
        "--force", action="store_true", help="stamp although the tables do not match REV"
    )
    lock_option(stamp)

    adopt = commands.add_parser(
        "adopt", help="bring a pre-appdb database to appdb's head in place (docs/adopting.md)"
    )
    shown = adopt.add_mutually_exclusive_group()
    shown.add_argument("--plan", action="store_true", help="print the plan, change nothing")
    shown.add_argument("--sql", action="store_true", help="print the SQL, change nothing")
    adopt.add_argument(
        "--naive-timezone", default="UTC", metavar="ZONE", help="zone of naive timestamps (UTC)"
    )
    adopt.add_argument(
        "--duplicates",
        choices=("refuse", "suffix"),
        default="refuse",
        help="emails/usernames equal once lower-cased: refuse (default) or suffix the later ids",
    )
    adopt.add_argument(
        "--long-values",
        choices=("refuse", "truncate"),
        default="refuse",
        help="text longer than appdb's column (never usernames or emails): refuse or truncate",
    )
    adopt.add_argument(
        "--keep-legacy", action="store_true", help="keep the legacy tables, moved aside"
    )
    lock_option(adopt)
    return parser


def _settings(args: argparse.Namespace) -> DatabaseSettings:
    if args.database_url is not None:
        # Parsed once, as the option it is (not twice, as DATABASE_URL and MIGRATION_URL).
        try:
            settings = DatabaseSettings(url=args.database_url, migration_url=None)
        except ConfigurationError as exc:
            msg = str(exc).replace("DATABASE_URL:", "--database-url:", 1)
            raise ConfigurationError(msg) from None
        # The explicit URL is the one to migrate, whatever DATABASE_MIGRATION_URL says.
        return settings.model_copy(update={"migration_url": settings.url})
    return DatabaseSettings()


def _lock_timeout(args: argparse.Namespace) -> float:
    from appdb.migrate import DEFAULT_LOCK_TIMEOUT  # noqa: PLC0415

    return DEFAULT_LOCK_TIMEOUT if args.lock_timeout is None else float(args.lock_timeout)


def _upgrade(args: argparse.Namespace) -> None:
    from appdb import migrate  # noqa: PLC0415 - Alembic loads only when a command needs it

    if args.sql:
        sys.stdout.write(migrate.offline_sql(args.revision))
        return
    settings = _settings(args)
    applied = migrate.upgrade(
        args.revision,
        settings,
        lock_timeout=_lock_timeout(args),
        allow_breaking=args.allow_breaking,
    )
    moved_on = [found for found in migrate.ahead(settings) if found.compatible]
    if not applied and moved_on:
        for found in moved_on:
            print(f"{found.describe()}: nothing to do")
        return
    _print_applied(applied, "upgraded", migrate.current(settings))


def _downgrade(args: argparse.Namespace) -> None:
    from appdb import migrate  # noqa: PLC0415

    if args.sql:
        sys.stdout.write(migrate.offline_sql(args.revision, downgrade=True))
        return
    settings = _settings(args)
    applied = migrate.downgrade(
        args.revision, settings, lock_timeout=_lock_timeout(args), drop_data=args.yes
    )
    _print_applied(applied, "downgraded", migrate.current(settings))


def _stamp(args: argparse.Namespace) -> None:
    from appdb import migrate  # noqa: PLC0415

    settings = _settings(args)
    migrate.stamp(args.revision, settings, lock_timeout=_lock_timeout(args), force=args.force)
    print(f"stamped {migrate.format_revisions(migrate.current(settings))}")


def _current(args: argparse.Namespace) -> None:
    from appdb import migrate  # noqa: PLC0415

    settings = _settings(args)
    if args.check:
        at = migrate.ensure_schema_current(settings)
        moved_on = migrate.ahead(settings)
        for found in moved_on:
            print(f"{found.describe()}: up to date")
        if not moved_on:
            print(f"{at} (head): up to date")
        return
    revisions = migrate.current(settings)
    marker = " (head)" if migrate.at_heads(revisions) else ""
    print(f"{migrate.format_revisions(revisions)}{marker}")
    for found in migrate.ahead(settings):
        verdict = "compatible" if found.compatible else "NOT compatible"
        print(f"  unknown to this installation, {verdict}: {found.describe()}")


def _heads(_args: argparse.Namespace) -> None:
    from appdb import migrate  # noqa: PLC0415

    print(migrate.format_revisions(migrate.heads()))


def _history(_args: argparse.Namespace) -> None:
    from appdb import migrate  # noqa: PLC0415

    for revision in migrate.history():
        marker = " (head)" if revision.is_head else ""
        parent = revision.down_revision or "<base>"
        labels = dict.fromkeys([*filter(None, [revision.service]), *revision.branch_labels])
        branch = f" [{', '.join(labels)}]" if labels else ""
        print(f"{parent} -> {revision.revision}{marker}{branch}: {revision.description}")


def _check(args: argparse.Namespace) -> None:
    from appdb import migrate  # noqa: PLC0415

    differences = migrate.check(_settings(args))
    if differences:
        for line in differences:
            print(line)
        msg = f"{len(differences)} difference(s) between the models and the database"
        raise _CheckFailedError(msg)
    print("models and migrations agree")


def _adopt(args: argparse.Namespace) -> None:
    from appdb.migrate.adopt import AdoptOptions, adopt, plan  # noqa: PLC0415

    options = AdoptOptions(
        naive_timezone=args.naive_timezone,
        duplicates=args.duplicates,
        long_values=args.long_values,
        keep_legacy=args.keep_legacy,
    )
    settings = _settings(args)
    if args.plan or args.sql:
        found = plan(settings, options)
        for line in found.statements if args.sql and found.layout else found.lines():
            print(line if line.startswith("--") or not args.sql else f"{line};")
        if not found.ready:
            msg = "adopt would refuse this database (see above); nothing was changed"
            raise _CheckFailedError(msg)
        return
    done = adopt(settings, options, lock_timeout=_lock_timeout(args))
    counts = ", ".join(f"{count} {table}" for table, count in done.row_counts.items())
    print(f"adopted the {done.layout} layout ({counts or 'no rows'}); database now at head")


def _schema(args: argparse.Namespace) -> None:
    from appdb import diagram  # noqa: PLC0415

    render = diagram.render_text if args.format == "text" else diagram.render_mermaid
    sys.stdout.write(render())


_COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "schema": _schema,
    "upgrade": _upgrade,
    "downgrade": _downgrade,
    "stamp": _stamp,
    "current": _current,
    "heads": _heads,
    "history": _history,
    "check": _check,
    "adopt": _adopt,
}


def _print_applied(applied: Sequence[object], verb: str, now_at: Sequence[str]) -> None:
    from appdb.migrate import AppliedRevision, format_revisions  # noqa: PLC0415

    if not applied:
        print(f"nothing to do: database already at {format_revisions(now_at)}")
        return
    for step in applied:
        if isinstance(step, AppliedRevision):
            print(f"{verb} {step.revision} in {step.seconds:.3f}s: {step.description}")
    print(f"database now at {format_revisions(now_at)}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run `appdb-migrate` with `argv` (default: the command line).

    Args:
        argv: The arguments after the program name.

    Returns:
        The exit code: 0 success, 1 failure or failed check, 2 usage or configuration error,
        130 interrupted (SIGINT).
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 for --help
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        _COMMANDS[args.command](args)
    except ConfigurationError as exc:
        return _fail(exc, EXIT_USAGE, verbose=args.verbose)
    except AppDBError as exc:
        return _fail(exc, EXIT_FAILURE, verbose=args.verbose)
    except KeyboardInterrupt:
        # PostgreSQL rolls back the revision in flight and releases the lock with the session.
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


def _fail(error: AppDBError, code: int, *, verbose: bool) -> int:
    if verbose:
        # Our messages and chained driver errors carry no password (see appdb.migrate).
        traceback.print_exception(error, file=sys.stderr)
    print(f"{PROG}: error: {error}", file=sys.stderr)
    return code


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
