"""Project tooling (layer checks)."""
