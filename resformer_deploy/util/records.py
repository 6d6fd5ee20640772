"""Base of the typed report objects (equivalence, drift ladder, operation counts, deployment).

Reports are dataclasses that check themselves in ``__post_init__``, as NIR's node classes do
(nir 1.0.8, nir/ir/neuron.py: ``LIF.__post_init__`` checks that its parameters' shapes agree), so
a report that exists is consistent; a broken rule raises ValueError (not ``assert``: ``python -O``
drops those). Their JSON form is their fields, written by util/serialize.py.

Fields are read and changed by attribute (``report.field``), in the package and in the tests;
a report is not subscriptable, so ``report["field"]`` is a TypeError (a JSON file read back is a
plain dict, indexed as such). ``get``, ``in`` and ``keys`` ask which fields a report has.
"""
import dataclasses
import math


class Record:
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
