"""`python -m appdb` is `appdb-migrate`."""

from appdb.cli import run

if __name__ == "__main__":
    run()
