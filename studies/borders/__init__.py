"""Image borders and tiles on real photographs."""
