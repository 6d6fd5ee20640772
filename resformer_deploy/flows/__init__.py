"""Flows: the named sequences of passes that prepare a graph for each kind of target."""
