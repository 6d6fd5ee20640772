"""Lava process definitions and process models used by the lava-cpu target.

This package holds definitions only: Lava's model discovery executes every .py
file next to a process definition, so no scripts may live here.
"""


def cpu_model(proc, arithmetic: str):
    """Lava's decorators of a Python process model of ``proc`` (implements, under the Loihi
    protocol; requires the CPU; tagged ``arithmetic``, "floating_pt" or "fixed_pt", which a run
    config selects), applied in the order the three stacked decorators would be."""
    from lava.magma.core.decorator import implements, requires, tag
    from lava.magma.core.resources import CPU
    from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

    def decorate(cls):
        return implements(proc=proc, protocol=LoihiProtocol)(requires(CPU)(tag(arithmetic)(cls)))
    return decorate
