"""Imported first by every benchmark script: puts this checkout first on sys.path (whatever
checkout the virtual environment's editable install points to)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def write_and_print(info: dict, json_out, columns, cells) -> None:
    """``info`` as indented JSON to ``json_out`` (when given), then its ``results`` as a Markdown
    table (benchmarks/RESULTS.md): ``columns`` the headers, ``cells(result)`` each row's cells."""
    import json
    if json_out:
        Path(json_out).write_text(json.dumps(info, indent=2) + "\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in info["results"]:
        print("| " + " | ".join(str(c) for c in cells(r)) + " |")
