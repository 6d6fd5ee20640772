"""A bounded walk of class directories (ImageFolder, spikingjelly frames).

torchvision's ``make_dataset`` walks each class directory with ``os.walk(followlinks=True)``, so a
``..`` symlink inside it loops for ever (two of them) or reads the tree again (one: 20 images
became 820). Here a symlink — to a directory or a file — is followed only when its target lies
outside the data set's root, and every directory is entered once (by device and inode), so
links outside cannot loop either; links leading back into the tree are skipped and reported.
The walk also stops at ``MAX_ENTRIES`` directory entries or ``MAX_SECONDS`` (an error naming
the figures) and, with ``limit``, once that many samples are found (``--limit``).
"""
import heapq
import os
import time
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from resformer_deploy.data.checks import check_budget
from resformer_deploy.errors import DeployError

MAX_ENTRIES = 20_000_000   # ImageNet's training split is 1.28 M files in 1,000 directories
MAX_SECONDS = 600.0
PATH_BYTES = 100           # a listed file in memory beyond its name: str header, list slot, label
FIRST_SIZE_CHECK = 64 * 2 ** 20  # the listing is checked against the budget from this size on, then at doublings


@dataclass
class Walk:
    """One scan of the class directories in ``root`` (a split directory or the data set's root
    ``tree``): the limits, what was skipped, and the directories seen."""
    root: str
    limit: Optional[int] = None          # stop after this many samples (None: all)
    entries: int = 0
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # (path, why)
    seen: set = field(default_factory=set)   # (st_dev, st_ino) of directories entered
    found: int = 0                       # samples found so far
    classes: int = 0                     # class directories scanned so far
    listed_bytes: int = 0                # memory the listed paths take (estimate)
    next_check: int = field(default_factory=lambda: FIRST_SIZE_CHECK)
    t0: float = field(default_factory=time.monotonic)
    tree: Optional[str] = None           # the data set's root (default root): links into it are not followed

    def __post_init__(self):
        self.real_root = os.path.realpath(self.tree or self.root)

    @property
    def full(self) -> bool:
        return self.limit is not None and self.found >= self.limit

    def inside_tree(self, path) -> bool:
        """Whether ``path`` resolves to the data set's root, into it, or to one of its ancestors."""
        real = os.path.realpath(path)
        return any(a == b or a.startswith(b.rstrip(os.sep) + os.sep)
                   for a, b in ((real, self.real_root), (self.real_root, real)))

    def _count(self, n):
        self.entries += n
        if self.entries > MAX_ENTRIES:
            raise DeployError(f"{self.root}: scan stopped after {self.entries:,} directory entries (more than "
                              f"{MAX_ENTRIES:,}); pass a smaller tree or --limit")
        elapsed = time.monotonic() - self.t0
        if elapsed > MAX_SECONDS:
            raise DeployError(f"{self.root}: scan stopped after {elapsed:,.0f} s (limit {MAX_SECONDS:,.0f} s) and "
                              f"{self.entries:,} directory entries; pass a smaller tree or --limit")

    def _size(self, n):
        self.listed_bytes += n
        if self.listed_bytes >= self.next_check:
            check_budget(self.listed_bytes, f"{self.root}: listing {self.found:,} files")
            self.next_check = 2 * self.listed_bytes

    def files(self, top, extensions) -> List[str]:
        """The files of ``top`` and its sub-directories whose lower-cased name ends in one of
        ``extensions``, in the order of ``sorted(os.walk(top))`` and ``sorted(fnames)``."""
        try:
            st = os.stat(top)
        except OSError:
            return []
        if (st.st_dev, st.st_ino) in self.seen:
            self.skipped.append((top, "directory already read"))
            return []
        self.seen.add((st.st_dev, st.st_ino))
        # directories in increasing path order (a child's path sorts after its parent's), so the
        # walk can stop at --limit with exactly the first samples of sorted(os.walk(top))
        before, found, heap = self.found, [], [top]
        while heap and not self.full:
            d = heapq.heappop(heap)
            try:
                with os.scandir(d) as it:
                    entries = list(it)
            except OSError:
                continue  # os.walk's default: an unreadable directory is passed over
            self._count(len(entries))
            names = []
            for e in entries:
                if e.is_symlink() and self.inside_tree(e.path):
                    self.skipped.append((e.path, "symlink into the data set"))
                    continue
                try:
                    if e.is_dir():
                        s = os.stat(e.path)
                        if (s.st_dev, s.st_ino) in self.seen:
                            self.skipped.append((e.path, "directory already read"))
                        else:
                            self.seen.add((s.st_dev, s.st_ino))
                            heapq.heappush(heap, e.path)
                    elif e.name.lower().endswith(extensions):
                        names.append(e.name)
                except OSError:  # a dangling link, as os.walk: neither a directory nor kept
                    continue
            new = [os.path.join(d, n) for n in sorted(names)]
            found += new
            self.found = before + len(found)
            self._size(sum(len(p) for p in new) + PATH_BYTES * len(new))
        if self.limit is not None:
            found = found[:max(0, self.limit - before)]
            self.found = before + len(found)
        return found
