"""studio: see docs/ARCHITECTURE.md."""
