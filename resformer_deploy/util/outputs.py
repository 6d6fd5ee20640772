"""Writing output files and directories: checked before the work, written whole or not at all.

* A regular file (or a new name) is written to a temporary file in the same directory, fsync'ed
  and renamed over the destination; ``os.replace`` is atomic on POSIX, so readers see the old or
  the new content, never a part. The temporary file is removed on any exception, including the
  CLI's ``Terminated`` (SIGTERM/SIGHUP) and ``KeyboardInterrupt``. A symlink is followed: its
  target is replaced and the link stays. Missing parent directories are created (like
  ``mkdir -p``) and removed again if the write fails.
* A character device or FIFO (``/dev/null``, a named pipe) is written to directly: renaming over
  it would replace the device node. Block devices and sockets are refused.
* A *file set* (the report) is built in a temporary sibling directory and renamed into place. An
  existing directory is replaced as a whole only if it is empty or holds nothing but regular files
  named as the set's (a previous report): a subdirectory, link or device of such a name, or any
  other entry, is refused, never deleted.
* No output is, or lies inside, an input: an input file (checkpoint, NIR file, ``.npz``) is never
  an output, and an input directory (a data set's root) is a tree no output may enter. Directories
  are compared by (device, inode) of every ancestor, so symlinks, ``..`` and bind mounts do not
  hide a data set; a file set also may not contain an input, as replacing it would delete it.
  What a symlink inside an input tree leads to outside it is an input too (the readers follow
  such links); the search for them stops after MAX_WALK_ENTRIES entries.
* Every ``OSError`` becomes :class:`OutputError` (``cannot write PATH: strerror``, exit code 2).

Data is handed over as bytes built in memory, so the only system calls that can fail are plain
``os.write``/``fsync``/``rename`` (clean ``OSError``s). Torch-free: the CLI checks destinations
with :func:`check_outputs` before importing anything heavy.
"""
import errno
import os
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path

from resformer_deploy.util.signals import deferred_signals
from resformer_deploy.errors import DeployError, summarize

CHUNK = 16 << 20  # os.write in pieces: signals are handled between them, partial writes are retried
MAX_WALK_ENTRIES = 2_000_000  # entries of an input tree searched for symlinks leading out of it


class OutputError(DeployError):
    """An output file or directory that cannot be written."""


def _error(path, err, detail: str = "") -> OutputError:
    """The one place an OSError (or an errno) becomes a user-facing message."""
    if isinstance(err, OSError):
        text = err.strerror or str(err)
    else:
        text = os.strerror(err)
    return OutputError(f"cannot write {path}: {text}" + (f" ({detail})" if detail else ""))


@contextmanager
def _translated(path):
    try:
        yield
    except OSError as e:
        raise _error(path, e) from None


def _stat(path):
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None  # missing, or below a file: the parent check names the culprit


def _kind(st) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISFIFO, "a FIFO")):
        if test(st.st_mode):
            return name
    return "a regular file" if stat.S_ISREG(st.st_mode) else "a special file"


def _direct(st) -> bool:
    """Written in place, not replaced: devices such as /dev/null and named pipes."""
    return st is not None and (stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode))


def _refuse_special(path, st) -> None:
    if st is not None and not (stat.S_ISREG(st.st_mode) or _direct(st)):
        if stat.S_ISDIR(st.st_mode):
            raise _error(path, errno.EISDIR, "expected a file name")
        raise OutputError(f"cannot write {path}: it is {_kind(st)}; refusing to replace or write into it")


def _temp_prefix(name: str) -> str:
    """'.NAME.' shortened so the temporary name (about 14 bytes longer) still fits NAME_MAX."""
    while len(os.fsencode(name)) > 200:
        name = name[:-1]
    return f".{name}."


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _existing_ancestor(path: Path) -> Path:
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def _make_parents(directory: Path) -> list:
    """mkdir -p; returns the directories it created, innermost last."""
    missing = []
    while not os.path.lexists(directory):
        missing.append(directory)
        directory = directory.parent
    created = []
    for d in reversed(missing):
        try:
            os.mkdir(d)
        except FileExistsError:
            continue
        created.append(d)
    return created


def _remove_dirs(created) -> None:
    for d in reversed(created):
        try:
            os.rmdir(d)
        except OSError:
            pass


def _check_space(directory, nbytes: int, path) -> None:
    """Refuse before writing when the size is known and does not fit (no temp file is created)."""
    try:
        v = os.statvfs(directory)
    except OSError:
        return
    free = (v.f_bfree if os.geteuid() == 0 else v.f_bavail) * v.f_frsize  # root may use reserved blocks
    if nbytes > free:
        raise _error(path, errno.ENOSPC, f"needs {nbytes / 1e6:.1f} MB, {free / 1e6:.1f} MB free in {directory}")


def _write_all(fd: int, data) -> None:
    view = memoryview(data).cast("B")
    while view:
        n = os.write(fd, view[:CHUNK])
        view = view[n:]


def _replace_file(path, fill, nbytes=None) -> None:
    """Atomic replacement of ``path``: ``fill(fd, tmp_name)`` writes the temporary file."""
    if not str(path):
        raise _error("''", errno.ENOENT, "empty file name")
    target = Path(os.path.realpath(path))
    st = _stat(target)
    if nbytes is not None:
        _check_space(_existing_ancestor(target.parent), nbytes, path)
    created, tmp = [], None
    try:
        with deferred_signals():
            created = _make_parents(target.parent)
            fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target.name), suffix=".tmp", dir=target.parent)
        try:
            fill(fd, tmp)
            os.fsync(fd)  # data on disk before the rename makes it visible (errors such as EIO/ENOSPC show here too)
            os.fchmod(fd, stat.S_IMODE(st.st_mode) if st else 0o666 & ~_umask())  # mkstemp makes 0600
        finally:
            os.close(fd)
        with deferred_signals():
            os.replace(tmp, target)
            tmp = None
    except BaseException:
        with deferred_signals():
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
            _remove_dirs(created)
        raise


def write_bytes(path, data) -> int:
    """Write ``data`` (bytes-like) to ``path`` as described in the module docstring; returns its size."""
    nbytes = memoryview(data).nbytes
    with _translated(path):
        st = _stat(path)
        _refuse_special(path, st)
        if _direct(st):
            fd = os.open(path, os.O_WRONLY)  # no O_CREAT/O_TRUNC: the node exists and is not a file
            try:
                _write_all(fd, data)
            finally:
                os.close(fd)
        else:
            _replace_file(path, lambda fd, _tmp: _write_all(fd, data), nbytes)
    return nbytes


def atomic_write(path, write_fn) -> None:
    """The same guarantees for writers that need a file name (``torch.save``, ``Path.write_text``):
    ``write_fn(name)`` writes the temporary file (or the device itself). Prefer :func:`write_bytes`."""
    with _translated(path):
        st = _stat(path)
        _refuse_special(path, st)
        if _direct(st):
            write_fn(str(path))
        else:
            _replace_file(path, lambda _fd, tmp: write_fn(tmp))


def write_file_set(out_dir, files: dict, owned=None) -> list:
    """Write ``{name: bytes}`` as the directory ``out_dir``, whole or not at all; returns the paths.

    ``owned``: the names an existing ``out_dir`` may hold to be replaced (default: ``files``).
    Anything else there is refused, since replacing the directory would delete it."""
    out = Path(out_dir)
    owned = set(files if owned is None else owned)
    with _translated(out):
        st = _stat(out)
        if st is not None and not stat.S_ISDIR(st.st_mode):
            raise _error(out, errno.ENOTDIR, f"it is {_kind(st)}")
        target = Path(os.path.realpath(out))
        if st is not None:
            _check_owned(out, target, owned)
        _check_space(_existing_ancestor(target.parent), sum(memoryview(d).nbytes for d in files.values()), out)
        created, tmpdir, old = [], None, None
        try:
            with deferred_signals():
                created = _make_parents(target.parent)
                tmpdir = tempfile.mkdtemp(prefix=_temp_prefix(target.name), suffix=".tmp", dir=target.parent)
            for name, data in files.items():
                fd = os.open(os.path.join(tmpdir, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                try:
                    _write_all(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            os.chmod(tmpdir, stat.S_IMODE(st.st_mode) if st else 0o777 & ~_umask())  # mkdtemp makes 0700
            with deferred_signals():
                if st is not None and os.listdir(target):  # a previous set: swap it out, then delete it
                    _check_owned(out, target, owned)  # again: files may have appeared during the work
                    old = tempfile.mkdtemp(prefix=_temp_prefix(target.name), suffix=".old", dir=target.parent)
                    os.rename(target, old)  # onto the empty directory just made: allowed by rename(2)
                    try:
                        os.rename(tmpdir, target)
                    except BaseException:
                        os.rename(old, target)
                        raise
                    shutil.rmtree(old, ignore_errors=True)
                else:  # new name, or an empty directory, which rename(2) replaces
                    os.rename(tmpdir, target)
                tmpdir = old = None
        except BaseException:
            with deferred_signals():
                if tmpdir is not None:
                    shutil.rmtree(tmpdir, ignore_errors=True)
                if old is not None and os.path.isdir(old) and not os.listdir(old):
                    os.rmdir(old)  # the empty placeholder; a non-empty one holds the previous set: kept
                _remove_dirs(created)
            raise
    return [out / name for name in files]


def _check_owned(shown, target: Path, owned) -> None:
    """Only regular files named as the set's: a directory called 'report.html' holds user files
    at some depth, and replacing the set would delete them (tests/util/test_output_trees.py)."""
    names = os.listdir(target)
    other = sorted(set(names) - set(owned))
    if other:
        raise OutputError(f"cannot write {shown}: the directory holds files that are not part of this output "
                          f"({summarize(other, 3)}) and replacing it would delete them; choose a new or "
                          f"empty directory")
    for name in sorted(names):
        st = os.lstat(target / name)
        if not stat.S_ISREG(st.st_mode):
            kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else _kind(st)
            raise OutputError(f"cannot write {shown}: {Path(shown) / name} is {kind}, not a file this toolchain "
                              f"wrote, and replacing the directory would delete it; choose a new or empty directory")


# --- checks before the work ------------------------------------------------------------------------


def _limits(path: Path):
    a = _existing_ancestor(path)
    try:
        return os.pathconf(a, "PC_NAME_MAX"), os.pathconf(a, "PC_PATH_MAX")
    except (OSError, ValueError):
        return 255, 4096


def _check_names(path) -> None:
    name_max, path_max = _limits(Path(os.path.abspath(path)))
    if len(os.fsencode(str(path))) + 16 > path_max:
        raise _error(path, errno.ENAMETOOLONG, f"path longer than {path_max - 16} bytes")
    for part in Path(os.path.abspath(path)).parts:
        if len(os.fsencode(part)) > name_max:
            raise _error(path, errno.ENAMETOOLONG, f"a name of {len(os.fsencode(part))} bytes, "
                                                   f"limit {name_max}")


def _probe(directory: Path, shown) -> None:
    """Create and remove a file: the only test that sees read-only mounts, ACLs and quotas (as root,
    os.access ignores permission bits)."""
    with deferred_signals():
        try:
            fd, name = tempfile.mkstemp(prefix=".resformer-deploy-probe-", dir=directory)
            os.close(fd)
            os.unlink(name)
        except OSError as e:
            raise _error(shown, e, f"in directory {directory}") from None


def _check_parent(directory: Path, shown) -> None:
    """The nearest existing ancestor must be a directory we can create entries in."""
    a = _existing_ancestor(directory)
    if os.path.islink(a) and not os.path.exists(a):
        raise _error(shown, errno.ENOENT, f"{a} is a dangling symlink")
    if not os.path.isdir(a):
        raise _error(shown, errno.ENOTDIR, f"{a} is not a directory")
    _probe(a, shown)


def _same_file(a, b) -> bool:
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def _inside(path, directory) -> bool:
    d = os.path.realpath(directory)
    return os.path.realpath(path).startswith(d.rstrip(os.sep) + os.sep)


def _dir_id(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


def _ancestor_ids(path) -> set:
    """(device, inode) of every existing directory on the resolved path, the path itself included."""
    ids, p = set(), Path(os.path.realpath(path))
    while True:
        i = _dir_id(p)
        if i is not None:
            ids.add(i)
        if p == p.parent:
            return ids
        p = p.parent


def _within(path, directory) -> bool:
    """``path`` is ``directory`` or below it: by name once resolved, or by inode (bind mounts)."""
    if _same_file(path, directory) or _inside(path, directory):
        return True
    d = _dir_id(directory)
    return d is not None and d in _ancestor_ids(path)


class _Linked(str):
    """A file or directory outside an input tree that a symlink inside it leads to."""
    tree = ""


def _linked_inputs(tree) -> list:
    """The targets outside ``tree`` of the symlinks inside it (and inside those targets): the data
    readers follow such links (resformer_deploy/data/scan.py), so these are read as part of the
    data set. Bounded by MAX_WALK_ENTRIES; every directory is entered once (by device and inode)."""
    root = os.path.realpath(tree)
    found, seen, stack, n = [], set(), [root], 0
    while stack and n < MAX_WALK_ENTRIES:
        d = stack.pop()
        i = _dir_id(d)
        if i is None or i in seen:
            continue
        seen.add(i)
        try:
            with os.scandir(d) as entries:  # streamed: a huge directory is not listed whole
                for e in entries:
                    n += 1
                    if n > MAX_WALK_ENTRIES:
                        break
                    _note_entry(e, root, tree, found, stack)
        except OSError:
            continue
    return found


def _note_entry(e, root, tree, found, stack) -> None:
    try:
        if e.is_symlink():
            target = os.path.realpath(e.path)
            if os.path.exists(target) and not (target == root or _inside(target, root)):
                found.append(_Linked(target))
                found[-1].tree = str(tree)
                if os.path.isdir(target):
                    stack.append(target)
        elif e.is_dir(follow_symlinks=False):
            stack.append(e.path)
    except OSError:
        pass


def _check_not_input(path, inputs) -> None:
    """An output is no input file and lies in no input tree (a data set's root and everything in it)."""
    for i in inputs:
        if isinstance(i, _Linked):
            if _same_file(path, i) and not os.path.isdir(i):
                raise OutputError(f"cannot write {path}: the input {i.tree} links to it ({i}), so the command "
                                  f"reads it; choose another output name")
            if os.path.isdir(i) and _within(path, i):
                raise OutputError(f"cannot write {path}: it lies inside {i}, which the input {i.tree} links to "
                                  f"and the command reads; choose an output outside it")
            continue
        if _same_file(path, i):
            raise OutputError(f"cannot write {path}: it is the input {i}; choose another output name")
        # a directory, or a name not yet there (a Ray run's shard directory before its first shard)
        if (_dir_id(i) is not None or not os.path.lexists(i)) and _within(path, i):
            raise OutputError(f"cannot write {path}: it lies inside the input {i}, which the command reads; "
                              f"choose an output outside it")


def _check_file(path, inputs, sets) -> None:
    if not str(path):
        raise _error("''", errno.ENOENT, "empty file name")
    _check_names(path)
    try:
        st = _stat(path)
    except OSError as e:  # e.g. a symlink loop, a component we may not search
        raise _error(path, e) from None
    _refuse_special(path, st)
    _check_not_input(path, inputs)
    for d in sets:
        if _inside(path, d):
            raise OutputError(f"cannot write {path}: it is inside {d}, which is replaced as a whole")
    if _direct(st):
        if not os.access(path, os.W_OK):
            raise _error(path, errno.EACCES)
        return
    _check_parent(Path(os.path.realpath(path)).parent, path)


def _check_dir(path, inputs, owned=None) -> None:
    if not str(path):
        raise _error("''", errno.ENOENT, "empty directory name")
    _check_names(path)
    try:
        st = _stat(path)
    except OSError as e:
        raise _error(path, e) from None
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise _error(path, errno.ENOTDIR, f"it is {_kind(st)}")
    target = Path(os.path.realpath(path))
    _check_not_input(path, inputs)
    if owned is None:  # a plain directory: files are written into it
        _check_parent(target, path)
        return
    for i in inputs:  # a file set replaces the whole directory
        if _within(i, path):
            raise OutputError(f"cannot write {path}: it contains the input {i} and would be replaced as a whole")
    if st is not None:
        if os.path.ismount(target):
            raise OutputError(f"cannot write {path}: it is a mount point and cannot be replaced; choose a "
                              f"directory inside it")
        _check_owned(path, target, owned)
    _check_parent(target.parent, path)


def check_outputs(inputs=(), files=(), dirs=(), file_sets=None) -> None:
    """Refuse, before any work starts, destinations that cannot be written: each check raises
    OutputError naming the path and the problem. ``None`` entries are skipped.

    inputs: files and directories the command reads (no output may be one of them or lie inside
    one of the directories); files: output files;
    dirs: directories files are written into; file_sets: ``{directory: names}`` written by
    :func:`write_file_set`."""
    inputs = [i for i in inputs if i]
    sets = {d: n for d, n in (file_sets or {}).items() if d is not None}
    if any(o is not None for o in (*files, *dirs, *sets)):  # the walk only when something is written
        inputs += [t for i in inputs if _dir_id(i) is not None for t in _linked_inputs(i)]
    for d in dirs:
        if d is not None:
            _check_dir(d, inputs)
    for d, names in sets.items():
        _check_dir(d, inputs, names)
    for f in files:
        if f is not None:
            _check_file(f, inputs, sets)
