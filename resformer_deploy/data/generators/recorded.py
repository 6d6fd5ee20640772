"""Re-create the generated data set a checkpoint was trained on, from the data-set record its
training wrote (``evaluation.dataset``: generator module, version, seed, copies), so a shipped
model is evaluated on exactly its own held-out split (``demo --model cifar|dvsg``).

A data set is written whole or not at all: it is built in a directory next to its place and
renamed into it; a ``generated.json`` beside the data says what built it, and is compared with
the record before the data is reused."""
import importlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from resformer_deploy.errors import DeployError, summarize

GENERATORS = ("resformer_deploy.data.generators.digits_images", "resformer_deploy.data.generators.digits_events")
STAMP = "generated.json"
# the record's fields that decide the samples (the rest are sizes, paths and timings)
KEYS = ("generator", "generator_version", "seed", "train_copies", "test_copies")


def recipe(dataset: dict, what: str) -> dict:
    """The fields of a training record's data set that decide its samples, checked."""
    missing = [k for k in KEYS if k not in (dataset or {})]
    if missing:
        raise DeployError(f"{what}: its training record names no generated data set "
                          f"(missing {', '.join('evaluation.dataset.' + k for k in missing)})")
    if dataset["generator"] not in GENERATORS:
        raise DeployError(f"{what}: data generator '{dataset['generator']}' is not one of {', '.join(GENERATORS)}")
    bad = [k for k in KEYS[1:] if not isinstance(dataset[k], int) or isinstance(dataset[k], bool)]
    if bad:
        raise DeployError(f"{what}: its training record's data set has non-integer "
                          f"{', '.join(f'evaluation.dataset.{k}={dataset[k]!r}' for k in bad)}")
    module = importlib.import_module(dataset["generator"])
    if dataset["generator_version"] != module.GENERATOR_VERSION:
        raise DeployError(f"{what}: trained on version {dataset['generator_version']} of {dataset['generator']}, "
                          f"this package has version {module.GENERATOR_VERSION}: the samples would differ")
    return {k: dataset[k] for k in KEYS}


def ensure_generated(dataset: dict, root, what: str, say=lambda m: None) -> Path:
    """``root`` holding the data set ``dataset`` (a training record) describes: reused when its
    stamp matches, else (re)generated atomically. Returns ``root``."""
    want = recipe(dataset, what)
    root = Path(root)
    stamp = root / STAMP
    have = None
    if stamp.is_file():
        try:
            have = json.loads(stamp.read_text())
        except (OSError, ValueError):
            have = None
        if isinstance(have, dict) and {k: have.get(k) for k in KEYS} == want:
            say(f"data: reusing {root} ({want['generator'].rsplit('.', 1)[-1]} v{want['generator_version']}, "
                f"seed {want['seed']})")
            return root
    if root.exists() and not stamp.is_file() and any(root.iterdir()):
        raise DeployError(f"{root}: exists and holds no {STAMP}: not a generated data set (choose another --data-dir)")
    if root.exists():
        foreign = _not_generated(root, have)
        if foreign:  # replacing root would delete files the generator did not write
            raise DeployError(f"{root}: holds another generated data set and {len(foreign)} entr"
                              f"{'y' if len(foreign) == 1 else 'ies'} its generator did not write "
                              f"({summarize(foreign)}): not replaced; move them or choose another --data-dir")
    root.parent.mkdir(parents=True, exist_ok=True)
    module = importlib.import_module(want["generator"])
    say(f"data: generating {root} with {want['generator']} (seed {want['seed']})")
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        made = module.build(tmp, seed=int(want["seed"]), train_copies=int(want["train_copies"]),
                            test_copies=int(want["test_copies"]))
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        (tmp / STAMP).write_text(json.dumps({**want, "files": files}, indent=2) + "\n")
        if root.exists():
            shutil.rmtree(root)
        tmp.rename(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"data: {made['n_train']:,} training and {made['n_test']:,} held-out samples in {made['seconds']} s")
    return root


def _not_generated(root: Path, stamp) -> list:
    """Entries under ``root`` that its stamp's file list does not name (a stamp without a list
    names none): only a tree of exactly the generator's files may be replaced."""
    files = stamp.get("files") if isinstance(stamp, dict) else None
    listed = {Path(f) for f in files} if isinstance(files, list) and all(isinstance(f, str) for f in files) else set()
    allowed = {Path(STAMP)} | listed | {d for f in listed for d in f.parents if d != Path(".")}
    found = []
    for dirpath, dirnames, filenames in os.walk(root):  # symlinks are entries, never followed
        for name in dirnames + filenames:
            rel = (Path(dirpath) / name).relative_to(root)
            if rel not in allowed or ((Path(dirpath) / name).is_symlink()):
                found.append(str(rel))
        dirnames[:] = [d for d in dirnames if (Path(dirpath) / d).relative_to(root) in allowed]
    return sorted(found)


def labels_sha256(y) -> str:
    """The digest a training record keeps of its held-out labels (int64 bytes, in reader order)."""
    import hashlib
    import numpy as np
    return hashlib.sha256(np.asarray(y, dtype=np.int64).tobytes()).hexdigest()
