"""resformer-deploy: SpikingResformer -> NIR -> Lava / Loihi 2 deployment toolchain."""
__version__ = "0.1.0"
