"""Neuromorphic hardware descriptions and mappings."""
