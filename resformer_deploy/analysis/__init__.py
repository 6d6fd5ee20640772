"""Analysis of runs: spike comparison, equivalence verdicts, drift ladder, operation counts."""
