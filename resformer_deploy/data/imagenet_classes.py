"""Which label each class folder of a data set gets (``--data`` ImageFolder / frames folders).

* ``sorted-folders``: torchvision ``ImageFolder``: label = position of the folder in the sorted
  list of folder names (torchvision/datasets/folder.py ``find_classes``).
* ``imagenet-wnid``: every class folder is an ImageNet-1k WordNet ID (``n01440764``, the way
  ImageNet val, Imagenette and Imagewoof are kept) and the classifier has 1000 classes: label =
  the standard ImageNet-1k index of the WNID (its position in the sorted list of the 1000 WNIDs,
  shipped as ``imagenet_1k.tsv``, sources named in its header), whatever subset of them is there.
* ``class-map``: ``--class-map FILE`` names the index of every folder: a JSON object
  ``{"folder": index, ...}`` or text lines ``folder index`` (``#`` comments, blank lines
  skipped). Entries for folders that are not there are allowed (a map of all classes fits a
  subset); a folder the map does not name, or an index outside the classifier, is an error.
"""
import functools
import json
import os
import re
from dataclasses import dataclass
from typing import Optional

from resformer_deploy.errors import DeployError, one_line, summarize

TABLE = "imagenet_1k.tsv"
IMAGENET_CLASSES = 1000
WNID = re.compile(r"n\d{8}")  # a WordNet noun synset ID, as ImageNet names its class folders
SORTED, IMAGENET_WNID, CLASS_MAP = "sorted-folders", "imagenet-wnid", "class-map"
MAPPINGS = (SORTED, IMAGENET_WNID, CLASS_MAP)


class ClassMapError(DeployError):
    """Class folders that cannot be given labels: an unknown WNID, mixed folders, a bad class map."""


def table_path() -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), TABLE)


@functools.lru_cache(maxsize=1)
def imagenet_1k() -> tuple:
    """The 1000 (wnid, name) of ImageNet-1k, by index; a damaged table is refused."""
    path = table_path()
    try:
        with open(path, encoding="utf-8") as f:
            rows = [line.rstrip("\n").split("\t") for line in f if line.strip() and not line.startswith("#")]
    except OSError as e:
        raise ClassMapError(f"{path}: cannot read the ImageNet-1k class table: {e.strerror or e}") from None
    bad = [i for i, r in enumerate(rows) if len(r) != 3 or r[0] != str(i) or not WNID.fullmatch(r[1])]
    wnids = [r[1] for r in rows if len(r) == 3]
    if len(rows) != IMAGENET_CLASSES or bad or wnids != sorted(set(wnids)):
        raise ClassMapError(f"{path}: damaged ImageNet-1k class table ({len(rows)} rows, expected "
                            f"{IMAGENET_CLASSES} lines 'index<TAB>wnid<TAB>name' in WNID order)")
    return tuple((r[1], r[2]) for r in rows)


@functools.lru_cache(maxsize=1)
def wnid_index() -> dict:
    """{wnid: ImageNet-1k index}."""
    return {w: i for i, (w, _) in enumerate(imagenet_1k())}


@dataclass(frozen=True)
class ClassMap:
    """A ``--class-map`` file as read: (folder, index) in file order (shipped to Ray workers as is)."""
    path: str
    entries: tuple

    @property
    def index(self) -> dict:
        return dict(self.entries)


class _Pairs(list):
    """A JSON object as its (key, value) pairs: duplicate keys stay visible (a dict keeps the last)."""


def _entries_json(path, text):
    try:
        obj = json.loads(text, object_pairs_hook=_Pairs)
    except ValueError as e:
        raise ClassMapError(f"--class-map {path}: not valid JSON: {one_line(e)}") from None
    if not isinstance(obj, _Pairs):
        raise ClassMapError(f"--class-map {path}: a JSON class map is an object {{\"folder\": index, ...}}, "
                            f"got a {type(obj).__name__}")
    bad = [k for k, v in obj if isinstance(v, bool) or not isinstance(v, int)]
    if bad:
        raise ClassMapError(f"--class-map {path}: the index of {summarize(repr(k) for k in bad)} is not an integer")
    return list(obj)


def _entries_text(path, text):
    entries = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(None, 1)  # a folder name may hold spaces; the index is the last word
        if len(parts) != 2 or not re.fullmatch(r"-?\d+", parts[1]):
            raise ClassMapError(f"--class-map {path} line {n}: expected 'folder index', got {line[:60]!r}")
        entries.append((parts[0], int(parts[1])))
    return entries


def read_class_map(path: str) -> ClassMap:
    """``--class-map FILE``: JSON (the text starts with ``{``) or ``folder index`` lines."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ClassMapError(f"--class-map {path}: cannot read: {getattr(e, 'strerror', None) or one_line(e)}") from None
    is_json = text.lstrip().startswith("{")
    entries = _entries_json(path, text) if is_json else _entries_text(path, text)
    if not entries:
        raise ClassMapError(f"--class-map {path}: no entries (JSON {{\"folder\": index}} or lines 'folder index')")
    folders = [f for f, _ in entries]
    dup = sorted({f for f in folders if folders.count(f) > 1})
    if dup:
        raise ClassMapError(f"--class-map {path}: folder(s) named twice: {summarize(dup)}")
    neg = [f"{f} {i}" for f, i in entries if i < 0]
    if neg:
        raise ClassMapError(f"--class-map {path}: negative index: {summarize(neg)}")
    return ClassMap(path, tuple(entries))


@dataclass(frozen=True)
class ClassMapping:
    """The labels of a data set's class folders: ``folders`` (sorted, as found), the label of each
    (``indices``), the names of the labels 0..K-1 (``classes``) and, for ImageNet, their
    human-readable names (``titles``)."""
    kind: str  # one of MAPPINGS
    folders: tuple
    indices: tuple
    classes: tuple
    titles: Optional[tuple] = None
    class_map: Optional[ClassMap] = None
    unused: int = 0  # class-map entries naming no folder

    def line(self) -> str:
        """What the output says about the labels."""
        pairs = [f"{f} -> {i}" + (f" {self.titles[i]}" if self.titles else "")
                 for f, i in zip(self.folders, self.indices)]
        shown = summarize(pairs, 3)
        if self.kind == IMAGENET_WNID:
            return (f"class mapping: {IMAGENET_WNID} ({len(self.folders):,} WordNet-ID folders at their ImageNet-1k "
                    f"indices: {shown})")
        if self.kind == CLASS_MAP:
            extra = f"; {self.unused:,} map entries name no folder" if self.unused else ""
            return f"class mapping: {CLASS_MAP} {self.class_map.path} ({shown}{extra})"
        return f"class mapping: {SORTED} (label = position of the folder name in sorted order: {shown})"

    def to_json(self) -> dict:
        return {"kind": self.kind, "source": (self.class_map.path if self.class_map else
                                              table_path() if self.kind == IMAGENET_WNID else None),
                "folders": {f: i for f, i in zip(self.folders, self.indices)}}

    def per_class(self, entries: list) -> list:
        """Per-class accuracy entries ({"class", "name", ...}) under the WNID and the class name."""
        if not self.titles:
            return entries
        return [{"class": e["class"], "wnid": self.classes[e["class"]], "name": self.titles[e["class"]],
                 **{k: v for k, v in e.items() if k not in ("class", "name")}} for e in entries]


def _with_map(where, folders, num_classes, cm: ClassMap) -> ClassMapping:
    index = cm.index
    missing = [f for f in folders if f not in index]
    if missing:
        raise ClassMapError(f"--class-map {cm.path}: class folder(s) of {where} not in the map: {summarize(missing)} "
                            f"({len(missing)} of {len(folders)})")
    if num_classes is None:
        raise ClassMapError(f"--class-map {cm.path}: the classifier's number of classes is not known here")
    out = [f"{f} {index[f]}" for f in folders if index[f] >= num_classes]
    if out:
        raise ClassMapError(f"--class-map {cm.path}: index out of range 0..{num_classes - 1} (the classifier has "
                            f"{num_classes} classes): {summarize(out)}")
    names = [str(i) for i in range(num_classes)]
    for f in folders:
        i = index[f]
        names[i] = f if names[i] == str(i) else f"{names[i]}+{f}"  # several folders may share a class
    return ClassMapping(CLASS_MAP, tuple(folders), tuple(index[f] for f in folders), tuple(names),
                        class_map=cm, unused=len(set(index) - set(folders)))


def assign_classes(folders, num_classes: Optional[int], class_map: Optional[ClassMap] = None,
                   where: str = "the data set") -> ClassMapping:
    """The mapping of the sorted class ``folders`` for a classifier of ``num_classes`` (None: not
    known, e.g. calibration data, whose labels are unused: sorted folders)."""
    folders = tuple(folders)
    if class_map is not None:
        return _with_map(where, folders, num_classes, class_map)
    sorted_folders = ClassMapping(SORTED, folders, tuple(range(len(folders))), folders)
    if num_classes != IMAGENET_CLASSES:
        return sorted_folders  # e.g. a model trained on Imagenette's 10 folders: sorted is its indexing
    wnid_like = [f for f in folders if WNID.fullmatch(f)]
    if not wnid_like:
        return sorted_folders
    if len(wnid_like) != len(folders):
        other = [f for f in folders if not WNID.fullmatch(f)]
        raise ClassMapError(f"{where}: mixed class folders, {len(wnid_like)} named by ImageNet WordNet ID "
                            f"({summarize(wnid_like, 3)}) and {len(other)} not ({summarize(other)}); name every "
                            f"folder by its WNID, or pass --class-map FILE (lines 'folder index')")
    index = wnid_index()
    unknown = [f for f in folders if f not in index]
    if unknown:
        one = len(unknown) == 1
        raise ClassMapError(f"{where}: class folder{'' if one else 's'} {summarize(unknown)} "
                            f"look{'s' if one else ''} like {'a WordNet ID' if one else 'WordNet IDs'} but "
                            f"{'is not one' if one else 'are not'} of the 1000 ImageNet-1k classes ({table_path()}); "
                            f"rename or pass --class-map FILE")
    table = imagenet_1k()
    return ClassMapping(IMAGENET_WNID, folders, tuple(index[f] for f in folders), tuple(w for w, _ in table),
                        titles=tuple(n for _, n in table))


def apply_class_mapping(source, num_classes: Optional[int], class_map=None):
    """Give a folder source (ImageFolder, frames) the labels of its mapping (``source.class_mapping``);
    ``class_map``: a ClassMap or the path of a --class-map file. Other sources keep their labels."""
    import numpy as np

    if isinstance(class_map, (str, os.PathLike)):
        class_map = read_class_map(class_map)
    if source.kind not in ("imagefolder", "frames"):
        if class_map is not None:
            raise ClassMapError(f"--class-map {class_map.path}: {source.describe()} has labels of its own, not class "
                                f"folders; --class-map applies to ImageFolder and frames directories")
        return source
    m = assign_classes(source.classes, num_classes, class_map,
                       f"{'ImageFolder' if source.kind == 'imagefolder' else 'frames'} {source.location}")
    source.class_mapping = m
    if m.kind != SORTED:
        source.labels = np.asarray(m.indices, dtype=np.int64)[source.labels]
        source.classes = m.classes
    return source
