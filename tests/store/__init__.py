"""Store tests: the one conformance suite over every backend, and SQL-specific tests."""
