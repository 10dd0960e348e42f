"""SmartSpace's Alembic revisions (``versions/``), registered with appdb as ``smartspace``.

appdb imports this package before migrating; importing it registers the models on
`appdb.metadata`, so ``appdb-migrate check`` and ``schema`` cover them.
"""

import smartspace.models  # noqa: F401 - registers the tables
