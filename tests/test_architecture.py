"""The package layout is the pipeline: every import (module level or inside a function) points
down the stage order below, so data flows one way and no two packages depend on each other."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# checkpoint -> model -> NIR -> passes -> plans (Lava, fixed point, hardware) -> targets -> flows
# -> analysis -> reports -> engines (evaluation spread over a cluster) -> API -> CLI; errors and util serve
# every stage.
STAGES = ["resformer_deploy.errors", "resformer_deploy.util", "resformer_deploy.model", "resformer_deploy.data",
          "resformer_deploy.training", "exporters", "resformer_deploy.passes", "resformer_deploy.lava",
          "resformer_deploy.fixed_point", "resformer_deploy.hardware", "targets", "resformer_deploy.flows",
          "resformer_deploy.analysis", "resformer_deploy.reporting", "resformer_deploy.engines", "resformer_deploy.api",
          "resformer_deploy.cli"]


def stage_of(module: str):
    best = None
    for s in STAGES:
        if module == s or module.startswith(s + "."):
            best = s
    if best is None and module == "resformer_deploy":
        return "resformer_deploy.errors"  # the package root holds only __version__
    return best


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path):
    """(imported module, line) for every import statement, relative ones resolved."""
    me = module_name(path)
    pkg = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            for a in node.names:  # `from pkg import module` imports pkg.module
                yield (f"{base}.{a.name}" if stage_of(f"{base}.{a.name}") else base), node.lineno


def project_edges():
    for top in ("resformer_deploy", "exporters", "targets"):
        for path in sorted((REPO / top).rglob("*.py")):
            src = stage_of(module_name(path))
            for mod, line in imports(path):
                dst = stage_of(mod)
                if dst and src and dst != src:
                    yield src, dst, f"{path.relative_to(REPO)}:{line} imports {mod}"


def test_every_module_belongs_to_a_stage():
    missing = [str(p.relative_to(REPO)) for top in ("resformer_deploy", "exporters", "targets")
               for p in (REPO / top).rglob("*.py") if stage_of(module_name(p)) is None]
    assert missing == []


def test_imports_point_down_the_pipeline():
    up = [why for src, dst, why in project_edges() if STAGES.index(dst) > STAGES.index(src)]
    assert up == [], "\n".join(up)


def test_no_cycle_between_packages():
    graph = {}
    for src, dst, _ in project_edges():
        graph.setdefault(src, set()).add(dst)
    state, cycles = {}, []

    def visit(n, stack):
        state[n] = "open"
        for m in graph.get(n, ()):
            if state.get(m) == "open":
                cycles.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m, stack + [m])
        state[n] = "done"
    for n in list(graph):
        if n not in state:
            visit(n, [n])
    assert cycles == []


def test_the_checker_sees_an_upward_import(tmp_path):
    """The parser resolves relative and lazy imports (a check that could not fail is no check)."""
    f = REPO / "resformer_deploy" / "model" / "_probe_upward.py"
    f.write_text("def f():\n    from ..cli import main\n")
    try:
        assert any("_probe_upward" in why and dst == "resformer_deploy.cli"
                   for src, dst, why in project_edges())
    finally:
        f.unlink()
