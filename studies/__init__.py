"""One-off studies and checks behind the numbers of README and docs/ (not installed: run from the repo root)."""
