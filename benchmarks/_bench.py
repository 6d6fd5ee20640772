"""Imported first by every benchmark script: puts this checkout first on sys.path (whatever
checkout the virtual environment's editable install points to)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
