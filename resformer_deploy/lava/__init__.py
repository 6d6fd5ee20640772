"""Lowered plans for Lava: the NIR graph as a typed, checked description of Lava processes."""
