"""Base of the typed report objects (equivalence, drift ladder, operation counts, deployment).

Reports are dataclasses that check themselves in ``__post_init__``, as NIR's node classes do
(nir 1.0.8, nir/ir/neuron.py: ``LIF.__post_init__`` checks that its parameters' shapes agree), so
a report that exists is consistent; a broken rule raises ValueError (not ``assert``: ``python -O``
drops those). Their JSON form is their fields, written by util/serialize.py.

The package reads fields by attribute. ``report["field"]`` reads a field too, for the tests and
earlier JSON readers that index reports by the names their JSON carries. Reading is all it offers;
a report is changed by attribute (``report.field = v``), which a typo cannot silently turn into a
new key.
"""
import dataclasses
import math


class Record:
    def __getitem__(self, name: str):
        if name not in self._field_names():
            raise KeyError(f"{type(self).__name__} has no field '{name}'")
        return getattr(self, name)

    def get(self, name: str, default=None):
        return getattr(self, name) if name in self._field_names() else default

    def __contains__(self, name) -> bool:
        return name in self._field_names()

    def keys(self):
        return list(self._field_names())

    @classmethod
    def _field_names(cls):
        return [f.name for f in dataclasses.fields(cls)]


def require(ok: bool, what: str) -> None:
    """Raise ValueError with ``what`` (the broken rule) unless ``ok``."""
    if not ok:
        raise ValueError(what)


def is_fraction(v) -> bool:
    return v is None or (isinstance(v, (int, float)) and 0.0 <= v <= 1.0)


def is_count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def is_nonneg(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and (v >= 0 or math.isnan(v))
