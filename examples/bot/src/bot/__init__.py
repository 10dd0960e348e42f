"""An example aiogram 3 bot on appdb: ``BOT_TOKEN=... DATABASE_URL=... appdb-example-bot``."""
