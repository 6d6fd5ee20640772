"""Reports: text tables, JSON, HTML and figures."""
