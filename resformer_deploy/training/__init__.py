"""The CPU training loop used by the examples."""
