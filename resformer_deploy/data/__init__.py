"""Data sets and their preprocessing."""
