"""File-system checks shared by core and the plugins, so that every file problem reads the same:
one line naming the path and what is wrong with it (a folder where a file was expected, a
symbolic-link loop, a permission refused, a file that exists where a folder must be written).

Outputs never replace a user's file unasked: `reserve_file` picks the first free numbered name
(``turn1_image_0.png``, ``turn1_image_0-1.png``, ...) and creates it atomically, and
`check_new_folder` refuses a folder that already holds files unless ``overwrite`` is given.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from nextgpt.errors import ConfigError, MediaError


def describe_os_error(exc: OSError) -> str:
    """``exc`` as one line: the path (when known) and the system's reason, without Python's
    ``[Errno N]`` prefix."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is not None:
        target = f" -> {exc.filename2}" if exc.filename2 is not None else ""
        return f"{exc.filename}{target}: {reason}"
    return reason


def file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file, or None when it can: it does not exist, is a
    broken symbolic link or a symbolic-link loop, is a folder (e.g. a folder named ``x.png``) or
    not a regular file, or cannot be opened (permission refused)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return "broken symbolic link (its target does not exist)" if path.is_symlink() else "file not found"
    except OSError as exc:  # ELOOP (a symbolic-link loop), EACCES on a parent folder, ENAMETOOLONG...
        return "cannot read: " + ("symbolic-link loop" if exc.errno == errno.ELOOP else (exc.strerror or str(exc)))
    if stat.S_ISDIR(info.st_mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    return None


def check_media_file(path: Path, extensions: tuple[str, ...], kind: str) -> None:
    """Check ``path`` before a media loader decodes it, with the reason a user can act on.

    Raises `MediaError` naming the file when its suffix is not one of ``extensions``, it cannot
    be read as a file (`file_problem`), or it is empty.
    """
    suffix = path.suffix.lower()
    if suffix not in extensions:
        raise MediaError(path, f"unsupported {kind} suffix {suffix or '(none)'!r}; expected one of {extensions}")
    problem = file_problem(path)
    if problem is not None:
        raise MediaError(path, problem)
    if path.stat().st_size == 0:
        raise MediaError(path, "file is empty")


def reserve_file(directory: Path, stem: str, suffix: str) -> Path:
    """Create and return ``directory/stem+suffix``, or the first free ``stem-N+suffix``: an
    empty file the caller then writes, so two writers (or two runs) never pick the same name.

    Raises `MediaError` naming the path when the folder cannot be created or written.
    """
    ensure_folder(directory)
    for number in range(100_000):
        path = directory / (f"{stem}{suffix}" if number == 0 else f"{stem}-{number}{suffix}")
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            continue
        except OSError as exc:
            raise MediaError(path, f"cannot write: {exc.strerror or exc}") from exc
        return path
    raise MediaError(directory / f"{stem}{suffix}", "no free numbered name left")


def ensure_folder(directory: Path, what: str = "output folder") -> Path:
    """Create ``directory`` (and its parents) if needed and check it can be written.

    Raises `ConfigError` naming the path when it is a file, lies under a file, or cannot be
    created or written (read-only, permission refused).
    """
    directory = Path(directory)
    check_writable_folder(directory, what)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{directory}: cannot create the {what}: {exc.strerror or exc}") from exc
    return directory


def check_writable_folder(directory: Path, what: str = "output folder") -> Path:
    """Check, without creating anything, that files can be written in ``directory``: it is a
    writable folder, or does not exist yet and its nearest existing parent is a writable folder.
    Raises `ConfigError` naming the path and the reason."""
    directory = Path(directory)
    existing = directory
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():
            raise ConfigError(f"{directory}: the {what} is a broken or looping symbolic link ({existing})")
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == directory else f"lies under the file {existing}"
        raise ConfigError(f"{directory}: the {what} {where}, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "is not writable" if existing == directory else f"cannot be created: {existing} is not writable"
        raise ConfigError(f"{directory}: the {what} {where}")
    return directory


def check_new_folder(directory: Path, overwrite: bool, flag: str = "--overwrite") -> Path:
    """Check that ``directory`` can be written without replacing anything: it must not exist or
    be empty, unless ``overwrite``. Raises `ConfigError` naming the folder and ``flag``."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory}: exists and is a file, not a folder")
    if not overwrite and directory.is_dir() and any(directory.iterdir()):
        raise ConfigError(f"{directory}: already exists and is not empty; choose another folder or pass {flag}")
    return directory


def check_new_file(path: Path, overwrite: bool, flag: str = "--overwrite") -> Path:
    """Check that ``path`` can be written without replacing a file, unless ``overwrite``."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a file")
    if path.exists() and not overwrite:
        raise ConfigError(f"{path}: already exists; choose another name or pass {flag}")
    return path


def replace_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, so a crash leaves
    either the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
