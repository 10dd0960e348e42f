"""An example FastAPI service on appdb: ``uvicorn backend.app:app``."""
