"""Reading a file a user named: bounded, regular files only, never blocking.

Every file nrfprov reads on a user's word (Kconfig fragments, credential PEMs, CA bundles, the certs
folder) goes through :func:`read_bounded`, so a wrong path cannot hang or exhaust the machine:

- the file is opened with ``O_NONBLOCK``: opening a FIFO for reading returns at once instead of
  waiting for a writer [POSIX ``open()``, O_NONBLOCK]; ``O_NOCTTY`` keeps a terminal device from
  becoming our controlling terminal;
- ``fstat`` on the descriptor (not ``stat`` on the name, which a race could swap) refuses anything
  but a regular file: ``/dev/zero`` and ``/dev/urandom`` never end, a FIFO or a tty would block;
- at most ``limit + 1`` bytes are read, so an oversized file is refused without reading it all.

Errors are :class:`~nrfprov.errors.InputFileError` (exit 2) naming the file, what it was for and why.
"""

from __future__ import annotations

import os
import stat
import sys

from nrfprov.errors import InputFileError

#: A Kconfig fragment is a few KB; a prj.conf with every sample's options stays far below this.
FRAGMENT_LIMIT = 1024 * 1024
#: A PEM file for one sec tag: the content must fit one 4096-byte ``%CMNG`` command
#: (docs/modem-tools.md); 64 KB leaves room for comments and still bounds a wrong path.
PEM_LIMIT = 64 * 1024


def read_bounded(path: str | os.PathLike[str], limit: int, what: str) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them; else InputFileError."""
    name = os.fspath(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(name, flags)
    except FileNotFoundError:
        raise InputFileError(name, what, "no such file") from None
    except IsADirectoryError:
        raise InputFileError(name, what, "is a directory, not a file") from None
    except OSError as exc:
        raise InputFileError(name, what, f"cannot open: {exc.strerror or exc}") from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise InputFileError(name, what, f"is a {_kind(mode)}, not a regular file",
                                 hint="pass the path of a file")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(65536, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise InputFileError(name, what, f"cannot read: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if size > limit:
        raise InputFileError(name, what, f"is larger than {limit} bytes, the most nrfprov reads here",
                             hint="check the path")
    return b"".join(chunks)


def read_text_bounded(path: str | os.PathLike[str], limit: int, what: str, *, encoding: str = "ascii") -> str:
    """:func:`read_bounded`, decoded; a file that is not ``encoding`` text is an InputFileError."""
    data = read_bounded(path, limit, what)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InputFileError(os.fspath(path), what, f"is not {encoding} text (byte {exc.start})") from exc


def read_stdin_bounded(limit: int, what: str) -> bytes:
    """Standard input, at most ``limit`` bytes (``cat /dev/zero | nrfprov ... -`` must not fill memory)."""
    data = sys.stdin.buffer.read(limit + 1)
    if len(data) > limit:
        raise InputFileError("-", what, f"standard input is longer than {limit} bytes")
    return data


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"
