"""Run-directory storage: local paths and URIs (``s3://``, ``gs://``, ...) behind one small API.

A run directory (stage markers, model exports, labelled data, A/B results, reports) may be a local
path on one machine or a shared URI on a cluster. Local paths stay plain ``os`` paths: the same
files and the same atomic renames as before. Anything with a scheme goes through
``pyarrow.fs.FileSystem.from_uri``, so S3 honours the usual ``AWS_*`` variables (including
``AWS_ENDPOINT_URL`` for an S3-compatible server) and GCS its default credentials.

Code that writes many files with libraries that only know local paths (torch, matplotlib, RLlib
checkpoints) does so in ``staged_dir(uri)``, a local directory uploaded on success; loaders call
``local_copy(uri)``, a download into a per-machine cache keyed by the remote files' sizes and
modification times.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow.fs as pafs

logger = logging.getLogger(__name__)

CACHE_ENV = "GLAN_RAY_CACHE"
"""Environment variable naming the directory of downloaded URI copies (default: the temp dir)."""
_OBJECT_STORES = ("s3", "gs", "gcs")
"""Schemes whose paths are ``bucket/key`` (the filesystem can be cached per bucket)."""


class StorageError(OSError):
    """A URI's filesystem cannot be used (unknown scheme, missing support, no credentials)."""


def is_uri(path: str) -> bool:
    """Whether ``path`` names remote storage (has a ``scheme://``) rather than a local path."""
    return "://" in str(path)


def join(base: str, *parts: str) -> str:
    """``os.path.join`` for local paths; ``/``-joined for URIs."""
    if not is_uri(base):
        return os.path.join(base, *parts)
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts if p)])


@functools.lru_cache(maxsize=32)
def _bucket_filesystem(root: str) -> pafs.FileSystem:
    return pafs.FileSystem.from_uri(root)[0]


def filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) of a local path or URI.

    Raises ``StorageError`` naming ``path`` when its filesystem is unavailable (an unknown scheme,
    pyarrow built without it, credentials or endpoint that do not resolve).
    """
    if not is_uri(path):
        return pafs.LocalFileSystem(), os.path.abspath(path)
    url = urllib.parse.urlsplit(path)
    try:
        if url.scheme in _OBJECT_STORES:
            root = f"{url.scheme}://{url.netloc}" + (f"?{url.query}" if url.query else "")
            return _bucket_filesystem(root), (url.netloc + url.path).rstrip("/")
        fs, inner = pafs.FileSystem.from_uri(path)
        return fs, inner.rstrip("/") or inner
    except (OSError, ValueError, NotImplementedError) as e:  # ArrowInvalid is a ValueError
        raise StorageError(f"cannot open storage for {path}: {e}") from e


def _info(path: str) -> pafs.FileInfo:
    fs, inner = filesystem(path)
    try:
        return fs.get_file_info(inner)
    except OSError as e:
        raise StorageError(f"cannot reach {path}: {e}") from e


def exists(path: str) -> bool:
    """Whether a file or directory exists at ``path``."""
    if not is_uri(path):
        return os.path.exists(path)
    return _info(path).type != pafs.FileType.NotFound


def isdir(path: str) -> bool:
    """Whether ``path`` is a directory (on an object store: a prefix holding objects)."""
    if not is_uri(path):
        return os.path.isdir(path)
    return _info(path).type == pafs.FileType.Directory


def listdir(path: str) -> list[str]:
    """Sorted names of the entries directly under directory ``path``."""
    if not is_uri(path):
        return sorted(os.listdir(path))
    if not isdir(path):
        raise FileNotFoundError(f"no directory at {path}")
    fs, inner = filesystem(path)
    infos = fs.get_file_info(pafs.FileSelector(inner, recursive=False))
    return sorted(i.base_name for i in infos)


def makedirs(path: str) -> None:
    """Create directory ``path`` and its parents (no-op if it exists)."""
    if not is_uri(path):
        os.makedirs(path, exist_ok=True)
        return
    fs, inner = filesystem(path)
    fs.create_dir(inner, recursive=True)


def rmtree(path: str) -> None:
    """Delete directory ``path`` and everything under it (no-op if it does not exist)."""
    if not is_uri(path):
        if os.path.isdir(path):
            shutil.rmtree(path)
        return
    if isdir(path):
        fs, inner = filesystem(path)
        fs.delete_dir(inner)


def remove(path: str) -> None:
    """Delete file ``path``."""
    if not is_uri(path):
        os.remove(path)
        return
    fs, inner = filesystem(path)
    fs.delete_file(inner)


def read_bytes(path: str) -> bytes:
    """The content of file ``path``; ``FileNotFoundError`` naming it if missing."""
    if not is_uri(path):
        with open(path, "rb") as f:
            return f.read()
    if _info(path).type != pafs.FileType.File:
        raise FileNotFoundError(f"no file at {path}")
    fs, inner = filesystem(path)
    with fs.open_input_stream(inner) as f:
        return f.read()


def write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to file ``path`` atomically, creating parent directories.

    Locally: a temporary sibling renamed over ``path``. On object stores an object becomes
    visible whole when its upload completes, which gives the same guarantee.
    """
    if not is_uri(path):
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        return
    fs, inner = filesystem(path)
    with fs.open_output_stream(inner) as f:
        f.write(data)


def read_text(path: str) -> str:
    return read_bytes(path).decode()


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode())


def read_json(path: str) -> Any:
    return json.loads(read_bytes(path))


def write_json(path: str, obj: Any, **dump_kwargs: Any) -> None:
    """``json.dump(obj, **dump_kwargs)`` into ``path``, atomically (see ``write_bytes``)."""
    write_text(path, json.dumps(obj, **dump_kwargs))


def upload_dir(local: str, dest: str) -> None:
    """Copy every file under local directory ``local`` to ``dest`` (merging; files replaced)."""
    if not is_uri(dest):
        shutil.copytree(local, dest, dirs_exist_ok=True)
        return
    fs, inner = filesystem(dest)
    pafs.copy_files(
        os.path.abspath(local),
        inner,
        source_filesystem=pafs.LocalFileSystem(),
        destination_filesystem=fs,
    )


def download_dir(src: str, local: str) -> None:
    """Copy every file under directory ``src`` into local directory ``local``."""
    if not is_uri(src):
        shutil.copytree(src, local, dirs_exist_ok=True)
        return
    if not isdir(src):
        raise FileNotFoundError(f"no directory at {src}")
    fs, inner = filesystem(src)
    os.makedirs(local, exist_ok=True)
    pafs.copy_files(
        inner, local, source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem()
    )


def _download_file(src: str, local: str) -> None:
    os.makedirs(os.path.dirname(local) or ".", exist_ok=True)
    with open(local, "wb") as f:
        f.write(read_bytes(src))


def cache_root() -> str:
    """Directory of downloaded copies: ``$GLAN_RAY_CACHE`` or ``<tmp>/glan-ray-cache``."""
    return os.environ.get(CACHE_ENV) or os.path.join(tempfile.gettempdir(), "glan-ray-cache")


def local_copy(path: str, only: Iterable[str] | None = None) -> str:
    """A local directory with the content of directory ``path``: the path itself if local, else
    a cached download, fetched again only when a remote file's size or modification time changed.

    ``only``: relative paths of the files needed (e.g. a model export without its RLlib
    checkpoint); missing ones raise ``FileNotFoundError`` naming them.
    """
    if not is_uri(path):
        return path
    if not isdir(path):
        raise FileNotFoundError(f"no directory at {path}")
    only = None if only is None else tuple(only)
    fs, inner = filesystem(path)
    if only is None:
        infos = fs.get_file_info(pafs.FileSelector(inner, recursive=True))
    else:
        infos = fs.get_file_info([f"{inner}/{rel}" for rel in only])
        missing = [i.path for i in infos if i.type != pafs.FileType.File]
        if missing:
            raise FileNotFoundError(f"no {', '.join(missing)} under {path}")
    key = hashlib.sha256(path.encode())
    for i in sorted(infos, key=lambda i: i.path):
        key.update(f"{i.path}|{i.size}|{i.mtime_ns}\n".encode())
    target = os.path.join(cache_root(), key.hexdigest()[:24])
    if not os.path.isdir(target):
        os.makedirs(cache_root(), exist_ok=True)
        tmp = tempfile.mkdtemp(dir=cache_root(), prefix=".download-")
        try:
            if only is None:
                download_dir(path, tmp)
            else:
                for rel in only:
                    _download_file(join(path, rel), os.path.join(tmp, rel))
            os.rename(tmp, target)  # atomic; another process may have won the race
        except OSError:
            if not os.path.isdir(target):
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        logger.info("downloaded %s to %s", path, target)
    return target


@contextlib.contextmanager
def staged_dir(path: str, fetch: Iterable[str] = ()) -> Iterator[str]:
    """A local directory standing for directory ``path`` while the block writes into it.

    Local ``path``: created and yielded itself. URI: a temporary directory, first filled with the
    relative paths ``fetch`` that exist remotely, and uploaded into ``path`` (merging) when the
    block succeeds; nothing is uploaded if it raises.
    """
    if not is_uri(path):
        os.makedirs(path, exist_ok=True)
        yield path
        return
    tmp = tempfile.mkdtemp(prefix="glan-ray-stage-")
    try:
        for rel in fetch:
            src = join(path, rel)
            if exists(src):
                _download_file(src, os.path.join(tmp, rel))
        yield tmp
        upload_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = [
    "StorageError",
    "download_dir",
    "exists",
    "filesystem",
    "is_uri",
    "isdir",
    "join",
    "listdir",
    "local_copy",
    "makedirs",
    "read_bytes",
    "read_json",
    "read_text",
    "remove",
    "rmtree",
    "staged_dir",
    "upload_dir",
    "write_bytes",
    "write_json",
    "write_text",
]
