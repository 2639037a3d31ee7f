"""Fast EM variants, step counts and costs (studies/fastem/NOTES.md)."""
