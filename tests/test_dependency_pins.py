"""pyproject.toml's pins are the versions requirements.lock installs.

scripts/bootstrap.sh keys the cached environment by requirements.lock alone, so a pin changed in
pyproject.toml but not in the lock would silently keep the old environment."""
import re
from pathlib import Path

import tomli

ROOT = Path(__file__).resolve().parents[1]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503 name normalisation


def _lock() -> dict:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[_norm(name)] = version
    return pins


def _declared() -> list:
    project = tomli.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    return reqs


def test_every_declared_dependency_is_pinned_to_the_locked_version():
    lock = _lock()
    wrong = []
    for req in _declared():
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s;]+)", req.strip())
        if m is None:
            wrong.append(f"{req!r} is not pinned with ==")
        elif lock.get(_norm(m.group(1))) != m.group(2):
            wrong.append(f"{m.group(1)}=={m.group(2)} but requirements.lock has {lock.get(_norm(m.group(1)))}")
    assert wrong == []


def test_the_environment_key_hashes_the_lock_and_nothing_else():
    script = (ROOT / "scripts" / "bootstrap.sh").read_text()
    key_lines = [line for line in script.splitlines() if line.startswith("KEY=")]
    assert len(key_lines) == 1 and "requirements.lock" in key_lines[0] and "pyproject" not in key_lines[0]
