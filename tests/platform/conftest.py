"""Platform test fixtures live in tests/infra.py (shared with tests/faults and tests/web)."""
