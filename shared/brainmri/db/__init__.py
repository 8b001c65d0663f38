"""Database: SQLAlchemy 2 models, sessions, Alembic migrations and data-access functions."""
