"""Migration operations as plain functions: what `appdb-migrate` runs, callable from services too.

One module per job: `chains` (appdb's and the services' chains of revisions, and the Alembic
configuration that finds them), `services` (the registry of service chains), `lock` (the
advisory lock), `operations` (`upgrade`, `downgrade`, `stamp`), `guard` (`current`, `heads`,
`ensure_schema_current`), `check` (drift between database and models), `skew` (a database that
newer versions migrated), `tables` (the tables a database really has), `history`, `offline`
(SQL without a server), `errors` (error translation), `autogenerate` (what is compared) and
`adopt` (a pre-appdb database brought to head; the function `adopt` is re-exported here, so
its module is reached as ``appdb.migrate.adopt`` only through ``from ... import``).
"""

from appdb.migrate.adopt import AdoptionPlan, AdoptOptions, adopt
from appdb.migrate.adopt import plan as plan_adoption
from appdb.migrate.autogenerate import include_name
from appdb.migrate.chains import alembic_config
from appdb.migrate.check import check
from appdb.migrate.guard import at_heads, current, ensure_schema_current, heads
from appdb.migrate.history import Revision, history
from appdb.migrate.history import format_revisions as format_revisions
from appdb.migrate.lock import DEFAULT_LOCK_TIMEOUT
from appdb.migrate.offline import offline_sql as offline_sql
from appdb.migrate.operations import AppliedRevision, downgrade, stamp, upgrade
from appdb.migrate.skew import AheadChain, ahead

# format_revisions and offline_sql serve the CLI: re-exported (``x as x``), not curated API.
__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "AdoptOptions",
    "AdoptionPlan",
    "AheadChain",
    "AppliedRevision",
    "Revision",
    "adopt",
    "ahead",
    "alembic_config",
    "at_heads",
    "check",
    "current",
    "downgrade",
    "ensure_schema_current",
    "heads",
    "history",
    "include_name",
    "plan_adoption",
    "stamp",
    "upgrade",
]
