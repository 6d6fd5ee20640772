"""Lava process definitions and process models used by the lava-cpu target.

This package holds definitions only: Lava's model discovery executes every .py
file next to a process definition, so no scripts may live here.
"""
