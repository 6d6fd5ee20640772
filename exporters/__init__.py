"""Format converters: torch -> NIR (torch_to_nir), NIR files with our extension nodes (nir_io),
NIR -> third-party runtimes (norse_adapter)."""
