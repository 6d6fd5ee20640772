"""The `resformer-deploy` command line."""
