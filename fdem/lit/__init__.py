"""LightningModules of the trainable networks (used by ``fdem fit``)."""
