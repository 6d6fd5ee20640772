"""Stage-independent helpers: checked atomic outputs, progress bars, process accounting, memory budget."""
