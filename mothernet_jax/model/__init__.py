"""Flax Linen modules of the hypernetwork, one concept a file."""
