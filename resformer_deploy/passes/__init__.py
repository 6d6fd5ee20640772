"""Graph passes. Each module holds one pass and states what it requires and ensures."""
