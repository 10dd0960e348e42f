"""Every Python block of README.md passes ``mypy --strict`` and runs, on SQLite and PostgreSQL.

Each block is run as written, on a database migrated by `appdb.migrate.upgrade` and named by
``DATABASE_URL``; the FastAPI and aiogram blocks are then driven with requests and updates.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncGenerator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from aiogram import Bot, Dispatcher
from aiogram.client.session.base import BaseSession
from aiogram.methods import SendMessage, TelegramMethod
from aiogram.types import Chat, Message, Update
from aiogram.types import User as TelegramUser
from fastapi.testclient import TestClient
from sqlalchemy.engine import URL

from appdb import DatabaseSettings, migrate, reset_engines, session_scope
from appdb.users import create_user

REPO_ROOT = Path(__file__).resolve().parent.parent
BACKEND_SRC = REPO_ROOT / "examples" / "backend" / "src"
_FENCE = re.compile(r"^```(?P<lang>\w*)\n(?P<code>.*?)^```$", re.MULTILINE | re.DOTALL)


class Block(NamedTuple):
    """A fenced ``python`` block of the README and the line its code starts on."""

    line: int
    code: str

    @property
    def name(self) -> str:
        """A module name that says where the block is."""
        return f"readme_line_{self.line}"


def _python_blocks() -> list[Block]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    return [
        Block(text.count("\n", 0, match.start("code")) + 1, match["code"])
        for match in _FENCE.finditer(text)
        if match["lang"] == "python"
    ]


BLOCKS = _python_blocks()


def _kind(block: Block) -> str:
    if "def test_" in block.code:
        return "pytest"
    if "FastAPI()" in block.code:
        return "fastapi"
    if "Dispatcher()" in block.code:
        return "aiogram"
    return "script"


def _of_kind(kind: str) -> Block:
    (block,) = [block for block in BLOCKS if _kind(block) == kind]
    return block


def test_readme_has_the_blocks_this_file_drives() -> None:
    """One FastAPI block, one bot block and one test block; the rest run as scripts."""
    kinds = sorted(_kind(block) for block in BLOCKS)
    assert ["aiogram", "fastapi", "pytest"] == sorted(set(kinds) - {"script"})
    assert kinds.count("script") >= 2


@pytest.mark.slow
def test_readme_blocks_pass_mypy_strict(tmp_path: Path) -> None:
    """What a reader copies type-checks under ``mypy --strict`` (the repo's mypy settings)."""
    files = []
    for block in BLOCKS:
        path = tmp_path / f"{block.name}.py"
        path.write_text(block.code, encoding="utf-8")
        files.append(str(path))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            str(REPO_ROOT / "pyproject.toml"),
            "--cache-dir",
            str(REPO_ROOT / ".mypy_cache" / "readme"),
            *files,
        ],
        capture_output=True,
        text=True,
        check=False,
        env={"MYPYPATH": str(BACKEND_SRC), "PATH": "/usr/bin:/bin"},
    )
    assert 0 == result.returncode, result.stdout.replace(str(tmp_path) + "/", "") + result.stderr


@pytest.mark.slow
def test_readme_blocks_pass_pyright_strict(tmp_path: Path) -> None:
    """The same blocks under pyright strict, as the issue's reader checked them.

    The test block is left out: starlette's ``TestClient.post`` is untyped under pyright.
    """
    pyright = shutil.which("pyright", path=str(Path(sys.executable).parent))
    if pyright is None:
        if os.environ.get("CI"):
            pytest.fail("pyright is not installed (it is in appdb's tests extra)")
        pytest.skip("pyright is not installed: pip install -e '.[tests]'")
    for block in BLOCKS:
        if _kind(block) != "pytest":
            (tmp_path / f"{block.name}.py").write_text(block.code, encoding="utf-8")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.pyright]\ntypeCheckingMode = "strict"\npythonVersion = "3.11"\n', encoding="utf-8"
    )
    result = subprocess.run(
        [pyright],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env={
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}/usr/bin:/bin",
            "VIRTUAL_ENV": sys.prefix,
            "HOME": str(Path.home()),
        },
    )
    assert 0 == result.returncode, result.stdout.replace(str(tmp_path) + "/", "")


@pytest.fixture
def migrated(database_url: URL, monkeypatch: pytest.MonkeyPatch) -> Iterator[URL]:
    """The fresh database at appdb's head, and ``DATABASE_URL`` naming it, as a service runs."""
    migrate.upgrade(settings=DatabaseSettings(url=database_url))
    monkeypatch.setenv("DATABASE_URL", database_url.render_as_string(hide_password=False))
    reset_engines()
    yield database_url
    reset_engines()


def _run(block: Block) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": block.name}
    exec(compile(block.code, f"README.md:{block.line}", "exec"), namespace)  # noqa: S102
    return namespace


@pytest.mark.parametrize("block", [b for b in BLOCKS if _kind(b) == "script"], ids=str)
def test_script_block_runs(block: Block, migrated: URL) -> None:
    """The Operations example (its own asserts included) and the other snippets run as written."""
    _run(block)


def test_fastapi_block(migrated: URL) -> None:
    """An unknown user is 404, not 500; limit=600 is 422; a known user comes without its hash."""
    app = _run(_of_kind("fastapi"))["app"]
    with session_scope() as session:
        create_user(session, username="ann", email="ann@example.io", password="correct horse")
    with TestClient(app) as client:
        missing = client.get("/users/nobody")
        assert (404, {"detail": "no such user"}) == (missing.status_code, missing.json())
        ann = client.get("/users/ann")
        assert (200, "ann") == (ann.status_code, ann.json()["username"])
        assert "hashed_password" not in ann.json()
        assert [] == client.get("/users/ann/inbox").json()
        too_many = client.get("/users/ann/inbox", params={"limit": 600})
        assert (422, "InvalidInputError") == (too_many.status_code, too_many.json()["error"])


_ids = itertools.count(1)


class _RecordingSession(BaseSession):
    """A bot session that records what the bot sends instead of calling Telegram."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    async def make_request(
        self,
        bot: Bot,  # noqa: ARG002
        method: TelegramMethod[Any],
        timeout: int | None = None,  # noqa: ARG002, ASYNC109 - aiogram's signature
    ) -> Any:
        if isinstance(method, SendMessage):
            self.sent.append(method.text)
            chat = Chat(id=int(method.chat_id), type="private")
            return Message(message_id=next(_ids), date=datetime.now(UTC), chat=chat)
        return True

    async def stream_content(self, *_args: Any, **_kwargs: Any) -> AsyncGenerator[bytes, None]:
        raise NotImplementedError
        yield b""  # pragma: no cover

    async def close(self) -> None:
        pass


def _message(chat: Chat, user: TelegramUser | None, text: str) -> Message:
    return Message(
        message_id=next(_ids), date=datetime.now(UTC), chat=chat, from_user=user, text=text
    )


@pytest.mark.anyio
async def test_aiogram_block(migrated: URL) -> None:
    """A private message is answered; a channel post passes the middleware; a failure apologises."""
    dispatcher: Dispatcher = _run(_of_kind("aiogram"))["dispatcher"]
    recorder = _RecordingSession()
    bot = Bot(token="42:TEST-TOKEN", session=recorder)
    ann = TelegramUser(id=1001, is_bot=False, first_name="Ann", username="ann_tg")
    private = Chat(id=ann.id, type="private")
    await dispatcher.feed_update(bot, Update(update_id=1, message=_message(private, ann, "hi")))
    assert ["Hi @ann_tg! You have 0 unread message(s)."] == recorder.sent
    channel = Chat(id=-100123, type="channel", title="news")
    post = _message(channel, None, "news")
    await dispatcher.feed_update(bot, Update(update_id=2, channel_post=post))  # no KeyError
    # A Telegram id appdb refuses (InvalidInputError in the middleware) reaches the error handler.
    bad = TelegramUser(id=-5, is_bot=False, first_name="Bad")
    await dispatcher.feed_update(bot, Update(update_id=3, message=_message(private, bad, "hi")))
    assert "Sorry, something went wrong. Please try again later." == recorder.sent[-1]
    assert 2 == len(recorder.sent)


@pytest.mark.slow
def test_pytest_block(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """The README's service test passes with the appdb plugin against the example backend."""
    if backend == "postgresql":
        admin: URL = request.getfixturevalue("postgresql_admin_url")
        database = admin.render_as_string(hide_password=False)
    else:
        database = "sqlite"
    block = _of_kind("pytest")
    (tmp_path / f"test_{block.name}.py").write_text(block.code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env={
            "APPDB_TEST_DATABASE_URL": database,
            "PYTHONPATH": str(BACKEND_SRC),
            "PATH": "/usr/bin:/bin",
        },
    )
    assert 0 == result.returncode, result.stdout[-3000:]
    assert "1 passed" in result.stdout
