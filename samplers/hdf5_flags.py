"""Reading an HDF5 file whose writer was killed without SWMR mode.

HDF5 (superblock version 2/3, ``libver="latest"``) sets "file consistency flags" in the
superblock while a file is open for writing and clears them on close. A writer killed in
between (say ``h5py.File(path, "r+")`` while it updates an attribute) leaves the flags set, and
every later open fails with "file is already open for write (may use <h5clear file> ...)";
an SWMR read is refused too unless the writer was in SWMR mode.

``cleared_view(path)`` is a read-only file object that shows the file with the flags cleared
(and the superblock checksum recomputed), which is what ``h5clear -s`` would write, without
writing anything: h5py opens it as a file object, so a reader never modifies the ensemble.
Superblock layout (HDF5 File Format Specification, "Version 2 and 3 superblock"): signature (8),
version (1), size of offsets (1), size of lengths (1), consistency flags (1), four addresses
(4 x size of offsets), checksum (4, Jenkins lookup3 of everything before it).
"""
from __future__ import annotations

import io
import os

SIGNATURE = b"\x89HDF\r\n\x1a\n"
FLAGS_BYTE = 11
_M = 0xFFFFFFFF


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _M


def lookup3(data: bytes) -> int:
    """Bob Jenkins' lookup3 ``hashlittle`` with initval 0 (HDF5's ``H5_checksum_metadata``)."""
    n = len(data)
    a = b = c = (0xDEADBEEF + n) & _M
    i = 0
    while n - i > 12:
        a = (a + int.from_bytes(data[i:i + 4], "little")) & _M
        b = (b + int.from_bytes(data[i + 4:i + 8], "little")) & _M
        c = (c + int.from_bytes(data[i + 8:i + 12], "little")) & _M
        a = (a - c) & _M; a ^= _rot(c, 4); c = (c + b) & _M  # noqa: E702 (Jenkins' mix)
        b = (b - a) & _M; b ^= _rot(a, 6); a = (a + c) & _M  # noqa: E702
        c = (c - b) & _M; c ^= _rot(b, 8); b = (b + a) & _M  # noqa: E702
        a = (a - c) & _M; a ^= _rot(c, 16); c = (c + b) & _M  # noqa: E702
        b = (b - a) & _M; b ^= _rot(a, 19); a = (a + c) & _M  # noqa: E702
        c = (c - b) & _M; c ^= _rot(b, 4); b = (b + a) & _M  # noqa: E702
        i += 12
    if n == 0:
        return c
    tail = data[i:] + bytes(12 - (n - i))
    a = (a + int.from_bytes(tail[0:4], "little")) & _M
    b = (b + int.from_bytes(tail[4:8], "little")) & _M
    c = (c + int.from_bytes(tail[8:12], "little")) & _M
    c ^= b; c = (c - _rot(b, 14)) & _M  # noqa: E702 (Jenkins' final)
    a ^= c; a = (a - _rot(c, 11)) & _M  # noqa: E702
    b ^= a; b = (b - _rot(a, 25)) & _M  # noqa: E702
    c ^= b; c = (c - _rot(b, 16)) & _M  # noqa: E702
    a ^= c; a = (a - _rot(c, 4)) & _M  # noqa: E702
    b ^= a; b = (b - _rot(a, 14)) & _M  # noqa: E702
    c ^= b; c = (c - _rot(b, 24)) & _M  # noqa: E702
    return c


def cleared_superblock(head: bytes) -> bytes | None:
    """The superblock of ``head`` (the file's first bytes) with its consistency flags cleared,
    or None when it is not a version 2/3 superblock with flags set."""
    if len(head) < 12 or head[:8] != SIGNATURE or head[8] not in (2, 3) or head[FLAGS_BYTE] == 0:
        return None
    size = 12 + 4 * head[9] + 4
    if len(head) < size:
        return None
    body = bytearray(head[:size - 4])
    if lookup3(bytes(body)) != int.from_bytes(head[size - 4:size], "little"):
        return None  # not what we think it is: leave it alone
    body[FLAGS_BYTE] = 0
    return bytes(body) + lookup3(bytes(body)).to_bytes(4, "little")


class _PatchedReader(io.RawIOBase):
    """A read-only file whose first bytes are replaced by ``patch``."""

    def __init__(self, path: str | os.PathLike, patch: bytes):
        self._f = open(path, "rb")
        self._patch = patch

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def readinto(self, buf) -> int:
        pos = self._f.tell()
        n = self._f.readinto(buf)
        if n and pos < len(self._patch):
            k = min(n, len(self._patch) - pos)
            memoryview(buf)[:k] = self._patch[pos:pos + k]
        return n

    def close(self) -> None:
        self._f.close()
        super().close()


def cleared_view(path: str | os.PathLike) -> io.RawIOBase | None:
    """A read-only view of ``path`` with the superblock's consistency flags cleared, or None
    when the file has no such flags set."""
    with open(path, "rb") as f:
        head = f.read(64)
    patch = cleared_superblock(head)
    return None if patch is None else _PatchedReader(path, patch)
