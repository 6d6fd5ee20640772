"""No target is named in the pipeline: commands, analyses, flows and reports choose a target by
its capabilities (targets.names_with, Capabilities.bit_exact_twin), so a plug-in target is driven
like a built-in one. A built-in target's name may appear only in targets/ (where targets are
defined), as the default= of a CLI option, and in tests.

Not names of targets, so not counted: docstrings, JSON field names (dict keys and subscripts,
e.g. ``seconds["torch"]``), module names compared with ``__module__``, and ALLOWED below."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# the registered names (pyproject.toml's entry points) and PyTorch's pseudo-target of old
NAMES = {"reference", "lava-cpu", "loihi2-sim", "loihi2-emu", "loihi2", "torch"}
ALLOWED = {
    # the chip family a core plan is for (its JSON's "target" field), not the registered target
    ("resformer_deploy/hardware/loihi2/core_plan.py", "loihi2"),
}


def cli_option_defaults(tree):
    """String constants that are the default= of a click.option(...) call."""
    allowed = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "option":
            for kw in node.keywords:
                if kw.arg == "default":
                    allowed.update(id(c) for c in ast.walk(kw.value) if isinstance(c, ast.Constant))
    return allowed


def not_names(tree):
    """Constants that are no target's name: docstrings, dict keys, subscripts, ``__module__`` tests."""
    skip = set()
    for n in ast.walk(tree):
        if (isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body
                and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)):
            skip.add(id(n.body[0].value))
        elif isinstance(n, ast.Dict):
            skip.update(id(k) for k in n.keys if k is not None)
        elif isinstance(n, ast.Subscript):
            skip.add(id(n.slice))
        elif isinstance(n, ast.Compare) and any(isinstance(s, ast.Attribute) and s.attr == "__module__"
                                                for s in [n.left, *n.comparators]):
            skip.update(id(s) for s in [n.left, *n.comparators])
    return skip


def literals(root: Path):
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        tree = ast.parse(path.read_text())
        skip = not_names(tree) | (cli_option_defaults(tree) if "cli" in rel.parts else set())
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in NAMES
                    and id(node) not in skip and (f"{root.name}/{rel.as_posix()}", node.value) not in ALLOWED):
                yield f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}"


def test_no_target_name_literal_outside_targets_cli_defaults_and_tests():
    found = list(literals(REPO / "resformer_deploy"))
    assert found == [], "target names in the pipeline (choose by capability):\n" + "\n".join(found)


def test_the_scan_finds_a_planted_literal(tmp_path):
    (tmp_path / "m.py").write_text('"""doc: reference is fine here"""\nTARGET = "loihi2-emu"\n'
                                   'x = {"torch": 1}["torch"]\nok = type(x).__module__ == "torch"\n')
    cli = tmp_path / "cli"
    cli.mkdir()
    (cli / "c.py").write_text('import click\n@click.option("--target", default="reference")\ndef f(): return "lava-cpu"\n')
    global REPO
    old, REPO = REPO, tmp_path
    try:
        assert list(literals(tmp_path)) == ["cli/c.py:3: 'lava-cpu'", "m.py:2: 'loihi2-emu'"]
    finally:
        REPO = old
