"""No flow artifact is read by its name outside the flows and passes that make them: every other
module reads ``prepared.quantized_net`` (resformer_deploy/flows/artifacts.py ``Prepared``, which
targets see as targets.base.FlowArtifacts), so a misspelt or renamed artifact is a type error,
not a None at run time.

Counted: a subscript, ``.get(...)``, ``.pop(...)`` or ``in`` test with a declared artifact's name
(passes.manager.ARTIFACTS) on something named like a flow's store (``prepared``, ``artifacts``,
``art``, ``(prepared or {})``). JSON keys of the same spelling on other objects (the plan record's
``"calibration"``) are not artifact reads."""
import ast
import re
from pathlib import Path

from resformer_deploy.passes.manager import ARTIFACTS

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("resformer_deploy", "targets", "exporters")
# where artifacts are made and declared: a pass reads its inputs by the names it requires
OWNERS = ("resformer_deploy/flows/", "resformer_deploy/passes/")
STORE = re.compile(r"\b(prepared|artifacts|art)\b")


def _key(node):
    return node.value if isinstance(node, ast.Constant) and node.value in ARTIFACTS else None


def artifact_reads(tree):
    """(line, read) of every read of an artifact by its name in ``tree``."""
    for n in ast.walk(tree):
        if isinstance(n, ast.Subscript) and isinstance(n.ctx, ast.Load):
            recv, key = n.value, _key(n.slice)
        elif (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in ("get", "pop")
              and n.args):
            recv, key = n.func.value, _key(n.args[0])
        elif isinstance(n, ast.Compare) and len(n.ops) == 1 and isinstance(n.ops[0], (ast.In, ast.NotIn)):
            recv, key = n.comparators[0], _key(n.left)
        else:
            continue
        if key is not None and STORE.search(ast.unparse(recv)):
            yield n.lineno, ast.unparse(n)


def test_no_artifact_is_read_by_name_outside_flows_and_passes():
    found = [f"{path.relative_to(REPO)}:{line}: {code}"
             for root in ROOTS for path in sorted((REPO / root).rglob("*.py"))
             if not str(path.relative_to(REPO)).startswith(OWNERS)
             for line, code in artifact_reads(ast.parse(path.read_text()))]
    assert found == [], "\n".join(found)


def test_the_scan_finds_each_kind_of_read():
    # the forms this replaced (api/compile.py, targets/lava_cpu.py, targets/base.py before issue 26)
    src = ('a = prepared["calibration_inputs"]\nb = (prepared or {}).get("product_lowerings")\n'
           'c = "lava_plan" in self.prepared\nd = artifacts.pop("quantized_net")\n'
           'e = record["calibration"]\nf = prepared.quantized_net\ng = prepared.get("not_an_artifact")\n')
    assert [line for line, _ in artifact_reads(ast.parse(src))] == [1, 2, 3, 4]
