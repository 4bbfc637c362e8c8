"""qexp's task stores: task pools in SQLite (default) or PostgreSQL, with atomic fetch and leases."""
