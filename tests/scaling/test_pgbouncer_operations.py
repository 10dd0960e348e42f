"""The operations suite (users, messages, their async twins), run again through PgBouncer.

The tests are the main suite's own, imported here so that this directory's fixtures apply:
every engine and session goes through PgBouncer in transaction mode with
``DATABASE_POOLER=pgbouncer``, and the race tests run their concurrent clients through it.
"""

from test_aio import *  # noqa: F403
from test_messages import *  # noqa: F403
from test_users import *  # noqa: F403
