"""Synthetic classification tasks from the MotherNet (TabPFN) prior, as jitted JAX samplers."""
