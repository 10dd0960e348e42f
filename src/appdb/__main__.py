"""`python -m appdb` is `appdb-migrate`."""

from appdb.cli import run

run()
