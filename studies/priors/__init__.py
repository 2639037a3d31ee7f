"""Natural-image priors: do they help, which is better, how they trained."""
