"""Read replicas across a failover: the replica becomes the primary, or disappears.

`DATABASE_REPLICA_URLS` names one standby of the formation; `DATABASE_URL` is the multi-host URL
over every node. Whatever happens to the standby, sessions keep serving reads and a session
still reads its own writes.
"""

from __future__ import annotations

import logging

import pytest
from sqlmodel import func, select

from appdb import reset_engines, session_scope
from appdb.messages import inbox, send_message
from appdb.session import RoutingSession
from appdb.users import touch_telegram_user
from autofailover import HA_DATABASE, HA_PASSWORD, HA_USER, Formation, Node, ha_url

pytestmark = [pytest.mark.postgresql_only, pytest.mark.slow]

IN_RECOVERY = select(func.pg_is_in_recovery())


def _route_reads_to(formation: Formation, standby: Node, monkeypatch: pytest.MonkeyPatch) -> int:
    """Point the service's settings at the formation, reads at `standby`; seed one message."""
    replica = formation.node_url(standby, HA_USER, HA_PASSWORD, HA_DATABASE)
    monkeypatch.setenv("DATABASE_URL", ha_url(formation))
    monkeypatch.setenv("DATABASE_REPLICA_URLS", replica.render_as_string(hide_password=False))
    monkeypatch.setenv("DATABASE_REPLICA_RETRY_INTERVAL", "1")
    monkeypatch.setenv("DATABASE_CONNECT_TIMEOUT", "2")
    monkeypatch.setenv("DATABASE_POOL_SIZE", "2")
    reset_engines()
    with session_scope() as session:
        user = touch_telegram_user(session, 4242, first_name="Replica")
        user_id = int(user.id or 0)
        send_message(session, sender_id=user_id, recipient_id=user_id, content="seed")
    formation.wait_replayed(standby)
    with session_scope() as session:
        assert isinstance(session, RoutingSession)
        assert "seed" in [message.content for message in inbox(session, user_id)]
        assert session.exec(IN_RECOVERY).one() is True  # read on the standby
    return user_id


def _reads_its_own_write(user_id: int, content: str) -> None:
    with session_scope() as session:
        assert "seed" in [message.content for message in inbox(session, user_id)]
        send_message(session, sender_id=user_id, recipient_id=user_id, content=content)
        assert content in [message.content for message in inbox(session, user_id)]
        assert session.exec(IN_RECOVERY).one() is False
        session.commit()
        assert content in [message.content for message in inbox(session, user_id)]


def test_replica_promoted_to_primary_keeps_serving_reads(
    formation: Formation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replica becomes the primary: reads go on, and a session reads its own writes."""
    standby = formation.standbys()[0]
    user_id = _route_reads_to(formation, standby, monkeypatch)
    formation.promote(standby)
    assert standby is formation.primary()
    for _ in range(3):
        with session_scope() as session:
            assert "seed" in [message.content for message in inbox(session, user_id)]
    _reads_its_own_write(user_id, "after promotion")
    reset_engines()


def test_replica_that_disappears_falls_back_to_the_primary(
    formation: Formation, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The replica is killed: reads go to the primary with one warning; read-your-writes holds."""
    standby = formation.standbys()[0]
    user_id = _route_reads_to(formation, standby, monkeypatch)
    formation.kill(standby)
    with caplog.at_level(logging.WARNING, "appdb"):
        for _ in range(3):
            with session_scope() as session:
                assert "seed" in [message.content for message in inbox(session, user_id)]
                assert session.exec(IN_RECOVERY).one() is False
    warnings = [r.getMessage() for r in caplog.records if "read replica" in r.getMessage()]
    assert 1 == len(warnings)
    assert HA_PASSWORD not in warnings[0]
    _reads_its_own_write(user_id, "after the replica died")
    reset_engines()
