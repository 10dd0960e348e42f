"""Two appdb versions, two venvs, one database: what an older service sees after a newer one migrates."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from wheels import (
    ADDITIVE,
    BREAKING,
    CURRENT,
    HEAD,
    SMARTSPACE_ADDITIVE,
    SMARTSPACE_CURRENT,
    Install,
    Versions,
)

pytestmark = pytest.mark.slow

GUARD = """
import logging
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
from appdb.migrate import ensure_schema_current
print(ensure_schema_current())
"""

OPERATIONS = """
from sqlmodel import select
from appdb import User, session_scope
from appdb.users import create_user, touch_telegram_user
with session_scope() as session:
    touch_telegram_user(session, 777, username="bot_user", first_name="Bo")
    create_user(session, username="web_user", email="web@example.io", password="correct horse")
with session_scope() as session:
    print(sorted(user.display_name for user in session.exec(select(User)).all()))
"""

# Touches users until the stop file appears (or 60 s pass); writes the ready file after the
# first success; prints what happened as JSON.
LOOP = """
import json, pathlib, time
from appdb import session_scope
from appdb.users import get_user_by_telegram_id, touch_telegram_user
ready, stop = pathlib.Path({ready!r}), pathlib.Path({stop!r})
ok, errors, i = 0, [], 0
end = time.monotonic() + 60
while time.monotonic() < end and not stop.exists():
    i += 1
    try:
        with session_scope() as session:
            touch_telegram_user(session, 5000 + i % 20, username="loop")
            get_user_by_telegram_id(session, 5000)
        ok += 1
        ready.touch()
    except Exception as exc:
        errors.append(type(exc).__module__ + "." + type(exc).__name__ + ": " + str(exc)[:300])
    time.sleep(0.02)
print(json.dumps({{"ok": ok, "errors": errors}}))
"""


def _text(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def _revision(url: URL) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return sorted(
                connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars()
            )
    finally:
        engine.dispose()


class Loop:
    """An older service's process, touching users in a loop."""

    def __init__(self, install: Install, url: str, folder: Path) -> None:
        """Start it and wait for its first success."""
        self.ready, self.stop_file = folder / "ready", folder / "stop"
        code = LOOP.format(ready=str(self.ready), stop=str(self.stop_file))
        self.process = install.popen(code, url=url, cwd=folder)
        deadline = time.monotonic() + 60
        while not self.ready.exists():
            assert self.process.poll() is None, self.process.communicate()
            assert time.monotonic() < deadline, "the older process never succeeded"
            time.sleep(0.05)

    def finish(self) -> dict[str, object]:
        """Stop it; what it did."""
        self.stop_file.touch()
        out, err = self.process.communicate(timeout=60)
        assert 0 == self.process.returncode, err
        done: dict[str, object] = json.loads(out)
        return done


def test_older_appdb_serves_a_compatible_newer_schema(
    versions: Versions, database_url: URL, tmp_path: Path
) -> None:
    """After an additive release migrates, the older appdb starts, deploys, serves, refuses stamp."""
    url = _text(database_url)
    new, old = versions.additive, versions.current
    assert 0 == new.migrate("upgrade", url=url, cwd=tmp_path).returncode
    assert ["0003_users_nickname"] == _revision(database_url)

    guard = old.python(GUARD, url=url, cwd=tmp_path)
    assert 0 == guard.returncode, guard.stderr
    assert "0003_users_nickname\n" == guard.stdout
    compatible = [line for line in guard.stderr.splitlines() if "compatible" in line]
    expected = (
        f"INFO appdb: database is at 0003_users_nickname (appdb {ADDITIVE}), "
        f"compatible with this appdb {CURRENT}"
    )
    assert [expected] == compatible

    served = old.python(OPERATIONS, url=url, cwd=tmp_path)
    assert (0, "['@bot_user', 'web_user']\n") == (served.returncode, served.stdout), served.stderr

    upgraded = old.migrate("upgrade", url=url, cwd=tmp_path)
    assert 0 == upgraded.returncode, upgraded.stderr
    assert (
        f"appdb: database is at 0003_users_nickname (appdb {ADDITIVE}), compatible with this "
        f"appdb {CURRENT}: nothing to do\n"
    ) == upgraded.stdout

    shown = old.migrate("current", url=url, cwd=tmp_path)
    assert shown.stdout.startswith("0003_users_nickname\n")
    assert "unknown to this installation, compatible" in shown.stdout
    assert 0 == old.migrate("current", "--check", url=url, cwd=tmp_path).returncode
    checked = old.migrate("check", url=url, cwd=tmp_path)
    assert (0, "models and migrations agree\n") == (checked.returncode, checked.stdout)

    for refused in (("stamp", "head"), ("downgrade", "base")):
        result = old.migrate(*refused, url=url, cwd=tmp_path)
        assert 1 == result.returncode
        assert 1 == len(result.stderr.splitlines()), result.stderr
        assert f"run it with appdb >= {ADDITIVE}" in result.stderr
    assert ["0003_users_nickname"] == _revision(database_url)


@pytest.mark.parametrize("first", ["older", "newer"])
def test_upgrade_in_either_order(
    versions: Versions, database_url: URL, tmp_path: Path, first: str
) -> None:
    """Whichever version deploys first, both deploys succeed and the newer schema stays."""
    url = _text(database_url)
    order = [versions.current, versions.additive]
    if first == "newer":
        order.reverse()
    for install in order:
        result = install.migrate("upgrade", url=url, cwd=tmp_path)
        assert 0 == result.returncode, result.stderr
    assert ["0003_users_nickname"] == _revision(database_url)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_eight_mixed_upgrades_at_once(
    versions: Versions, database_url: URL, tmp_path: Path
) -> None:
    """Four older and four newer `upgrade` runs at the same moment all exit 0."""
    url = _text(database_url)
    installs = [versions.current, versions.additive] * 4
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(
            pool.map(lambda each: each.migrate("upgrade", url=url, cwd=tmp_path), installs)
        )
    assert [0] * 8 == [result.returncode for result in results], [r.stderr for r in results]
    assert ["0003_users_nickname"] == _revision(database_url)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_older_process_keeps_working_through_an_additive_migration(
    versions: Versions, database_url: URL, tmp_path: Path
) -> None:
    """A running older service sees no error while the newer one adds a column."""
    url = _text(database_url)
    assert 0 == versions.current.migrate("upgrade", url=url, cwd=tmp_path).returncode
    loop = Loop(versions.current, url, tmp_path)
    migrated = versions.additive.migrate("upgrade", url=url, cwd=tmp_path)
    time.sleep(0.5)  # the older process keeps going on the new schema
    outcome = loop.finish()
    assert 0 == migrated.returncode, migrated.stderr
    assert [] == outcome["errors"]
    assert isinstance(outcome["ok"], int)
    assert outcome["ok"] > 5


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_breaking_revision_waits_for_older_processes(
    versions: Versions, database_url: URL, tmp_path: Path
) -> None:
    """Refused while an older version is connected, naming it; runs once it has stopped."""
    url = _text(database_url)
    assert 0 == versions.current.migrate("upgrade", url=url, cwd=tmp_path).returncode
    loop = Loop(versions.current, url, tmp_path)
    refused = versions.breaking.migrate("upgrade", url=url, cwd=tmp_path)
    pid = loop.process.pid
    outcome = loop.finish()
    assert 1 == refused.returncode
    assert 1 == len(refused.stderr.splitlines()), refused.stderr
    assert (
        f"revision 0004_drop_is_superuser is breaking: it needs appdb >= {BREAKING}"
        in refused.stderr
    )
    assert f"appdb/{CURRENT}" in refused.stderr
    assert "--allow-breaking" in refused.stderr
    assert [] == outcome["errors"]
    assert [HEAD] == _revision(database_url), "nothing ran, not even 0003"
    del pid

    proceeded = versions.breaking.migrate("upgrade", url=url, cwd=tmp_path)
    assert 0 == proceeded.returncode, proceeded.stderr
    assert ["0004_drop_is_superuser"] == _revision(database_url)

    guard = versions.current.python(GUARD, url=url, cwd=tmp_path)
    assert 1 == guard.returncode
    assert "SchemaOutOfDateError" in guard.stderr
    assert f"needs appdb >= {BREAKING}" in guard.stderr
    deploy = versions.current.migrate("upgrade", url=url, cwd=tmp_path)
    assert 1 == deploy.returncode
    assert f"needs appdb >= {BREAKING}" in deploy.stderr
    assert 1 == versions.current.migrate("current", "--check", url=url, cwd=tmp_path).returncode


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_forced_breaking_revision_gives_running_older_process_an_appdb_error(
    versions: Versions, database_url: URL, tmp_path: Path
) -> None:
    """--allow-breaking runs it; the older process then gets SchemaMismatchError, no raw error."""
    url = _text(database_url)
    assert 0 == versions.current.migrate("upgrade", url=url, cwd=tmp_path).returncode
    loop = Loop(versions.current, url, tmp_path)
    forced = versions.breaking.migrate("upgrade", "--allow-breaking", url=url, cwd=tmp_path)
    time.sleep(1.0)
    outcome = loop.finish()
    assert 0 == forced.returncode, forced.stderr
    errors = outcome["errors"]
    assert isinstance(errors, list)
    assert errors, "the older process met the dropped column"
    assert {"appdb.exceptions.SchemaMismatchError"} == {error.split(":")[0] for error in errors}
    assert "is_superuser" in errors[0]


def test_older_process_after_a_breaking_release_gets_schema_mismatch(
    versions: Versions, database_url: URL, tmp_path: Path
) -> None:
    """On either backend, a query of the older version on the newer schema raises our error."""
    url = _text(database_url)
    assert 0 == versions.breaking.migrate("upgrade", url=url, cwd=tmp_path).returncode
    served = versions.current.python(OPERATIONS, url=url, cwd=tmp_path)
    assert 1 == served.returncode
    last = served.stderr.strip().splitlines()[-1]
    assert last.startswith("appdb.exceptions.SchemaMismatchError: "), served.stderr
    assert "is_superuser" in last
    # The newer version serves, and its guard passes.
    assert 0 == versions.breaking.python(GUARD, url=url, cwd=tmp_path).returncode


def test_older_service_chain_on_a_compatible_newer_one(
    smartspace: tuple[Install, Install], database_url: URL, tmp_path: Path
) -> None:
    """Smartspace 0.1.0 starts, deploys and checks after 0.1.1 added a column to its chain."""
    older, newer = smartspace
    url = _text(database_url)
    migrated = newer.migrate("upgrade", url=url, cwd=tmp_path)
    assert 0 == migrated.returncode, migrated.stderr
    assert "upgraded smartspace_0003 in " in migrated.stdout

    guard = older.python(GUARD, url=url, cwd=tmp_path)
    assert 0 == guard.returncode, guard.stderr
    expected = (
        f"INFO smartspace: database is at smartspace_0003 (smartspace "
        f"{SMARTSPACE_ADDITIVE}), compatible with this smartspace {SMARTSPACE_CURRENT}"
    )
    assert expected in guard.stderr.splitlines()
    deploy = older.migrate("upgrade", url=url, cwd=tmp_path)
    assert 0 == deploy.returncode, deploy.stderr
    assert "compatible with this smartspace 0.1.0: nothing to do" in deploy.stdout
    assert 0 == older.migrate("current", "--check", url=url, cwd=tmp_path).returncode
    refused = older.migrate("downgrade", "smartspace@base", url=url, cwd=tmp_path)
    assert 1 == refused.returncode
    assert f"run it with smartspace >= {SMARTSPACE_ADDITIVE}" in refused.stderr
