"""ARCHITECTURE.md names every module of resformer_deploy/, exporters/ and targets/.

Rule: a module ``.../<dir>/<name>.py`` is named when ONE line of ARCHITECTURE.md (a table row is
one line) contains both its file name ``<name>.py`` and its directory written as ``<dir>/`` (the
last directory component with a slash, e.g. ``loihi2/`` for
resformer_deploy/hardware/loihi2/drc.py), or anywhere its path relative to the repository root.
Each token must stand alone (``network.py`` is not found inside ``lava_network.py``, ``lava/``
not inside ``lava_processes/``), so a file name shared by several packages (``deploy.py`` in
cli/ and reporting/) must be named on each package's line. A package's ``__init__.py`` is named
by its package: ``<dir>/`` anywhere in the file.
"""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("resformer_deploy", "exporters", "targets")


def _token(text: str) -> re.Pattern:
    end = r"(?!\w)" if text[-1].isalnum() else ""  # "lava/" may be followed by "plan.py"
    return re.compile(rf"(?<![\w.]){re.escape(text)}{end}")


def modules() -> list[Path]:
    found = sorted(p.relative_to(ROOT) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))
    return [p for p in found if "__pycache__" not in p.parts]


def is_named(module: Path, doc: str) -> bool:
    directory = _token(module.parent.name + "/")
    if module.name == "__init__.py":
        return bool(directory.search(doc))
    if _token(module.as_posix()).search(doc):
        return True
    name = _token(module.name)
    return any(directory.search(line) and name.search(line) for line in doc.splitlines())


def test_every_module_is_named_in_architecture_md():
    doc = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    mods = modules()
    assert len(mods) > 100, "module scan found too few files"
    missing = [m.as_posix() for m in mods if not is_named(m, doc)]
    assert not missing, ("ARCHITECTURE.md does not name these modules (put '<name>.py' on the "
                         "line of its package '<dir>/'): " + ", ".join(missing))


def test_the_rule_rejects_a_name_found_only_elsewhere():
    doc = "| cli | `cli/` | `deploy.py`, `lava_network.py` |\n| reporting | `reporting/` | tables |"
    assert is_named(Path("resformer_deploy/cli/deploy.py"), doc)
    assert not is_named(Path("resformer_deploy/reporting/deploy.py"), doc)
    assert not is_named(Path("targets/artifact/network.py"), doc + "\n`artifact/`")
    assert is_named(Path("targets/artifact/network.py"), "see targets/artifact/network.py")
    assert is_named(Path("resformer_deploy/reporting/__init__.py"), doc)
    assert not is_named(Path("resformer_deploy/lava/plan.py"), "`lava_processes/` plan.py")
