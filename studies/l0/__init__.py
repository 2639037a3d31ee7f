"""The l0-anger baseline on BSDS500 (issue 13)."""
