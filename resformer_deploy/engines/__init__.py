"""Engines that run an evaluation's samples elsewhere than in this process, shard by shard.

``shards``: the deterministic shards of a run, their results on disk (atomic, resumable) and the
merged result; ``ray_engine``: the shards on a Ray cluster (``evaluate --engine ray``), the only
module that imports ``ray``. The default engine is the in-process one,
resformer_deploy.analysis.evaluation.evaluate.
"""
ENGINES = ("in-process", "ray")
