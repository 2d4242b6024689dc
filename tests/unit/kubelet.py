"""A secret volume written the way the kubelet writes one (its atomic writer), for tests.

Layout: a timestamped directory holding the files, ``..data`` a symlink to it, and one
symlink per key (``KEY -> ..data/KEY``). An update writes a new timestamped directory, points
``..data_tmp`` at it, renames that over ``..data`` (the one atomic step), adds the links of
new keys, removes the links of keys gone, then removes the old directory.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

DATA = "..data"


class KubeletVolume:
    """One secret volume directory, updated as the kubelet updates it."""

    def __init__(self, root: Path, mode: int = 0o600) -> None:
        self.root = root
        self.mode = mode
        self.root.mkdir(mode=0o700, exist_ok=True)
        self.swaps = 0

    def _timestamped(self) -> Path:
        stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime())
        while True:
            candidate = self.root / f"..{stamp}.{time.time_ns() % 1_000_000_000:09d}"
            try:
                candidate.mkdir(mode=0o755)
                return candidate
            except FileExistsError:
                continue

    def write(self, payload: Mapping[str, str], *, remove_old: bool = True) -> None:
        """Publish ``payload`` (file name -> content) as the volume's new version
        (``remove_old=False`` stops before the old version is removed)."""
        old = os.readlink(self.root / DATA) if os.path.islink(self.root / DATA) else None
        new = self._timestamped()
        for name, content in payload.items():
            path = new / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.mode)
            with os.fdopen(fd, "w") as handle:
                handle.write(content)
            os.chmod(path, self.mode)
        tmp = self.root / "..data_tmp"
        os.symlink(new.name, tmp)
        os.rename(tmp, self.root / DATA)  # the atomic swap
        for name in payload:
            link = self.root / name
            if not os.path.lexists(link):
                os.symlink(f"{DATA}/{name}", link)
        for entry in os.listdir(self.root):
            if not entry.startswith(".") and entry not in payload:
                os.unlink(self.root / entry)
        if old is not None and remove_old:
            shutil.rmtree(self.root / old)
        self.swaps += 1

    def current(self) -> Path:
        """The version directory ``..data`` points at."""
        return self.root / os.readlink(self.root / DATA)
