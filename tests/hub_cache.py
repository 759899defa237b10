"""A Hugging Face cache laid out on disk, as huggingface_hub writes it, for tests that load repo ids offline."""

import hashlib
import json
import os
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def cache_repo(
    folder: Path, cache: Path, repo_id: str, *, commit: str = COMMIT, tree_listing: bool = False
) -> Path:
    """Lays ``folder`` out in the Hugging Face cache ``cache`` as ``repo_id`` at ``main``, as huggingface_hub
    does: each file a blob named by its sha256, linked from ``snapshots/<commit>/``, and ``refs/main`` holding
    the commit; with ``tree_listing``, also the repo's file listing that ``snapshot_download`` caches
    (``trees/<commit>.json``). Returns the snapshot folder."""
    storage = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = storage / "snapshots" / commit
    listing = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
        listing[path.relative_to(folder).as_posix()] = {
            "size": len(data),
            "blob_id": hashlib.sha1(data).hexdigest(),
        }
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text(commit)
    if tree_listing:
        (storage / "trees").mkdir()
        (storage / "trees" / f"{commit}.json").write_text(json.dumps({"format_version": 1, "files": listing}))
    return snapshot
