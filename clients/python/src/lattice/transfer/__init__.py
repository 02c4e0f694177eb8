"""The upload and download engine datasets and models share.

Uploads follow the server's resumable blob protocol (docs/datasets.md, "Uploading (API)"):

1. ``build_manifest`` walks the folder: relative POSIX paths, sizes and SHA-256s. Hashes are
   cached per file (size, mtime_ns, inode) under the state folder, so a rerun does not read
   hundreds of MiB again. Nothing is skipped silently: a link pointing outside the folder, a
   broken link, a FIFO, socket or device is refused, naming it.
2. ``Uploader.run`` starts the upload (or resumes the one a state file names: same server,
   team, purpose, slug and manifest), sends only the chunks the server lists as missing from
   ``workers`` threads, each read from disk at its offset a piece at a time, once to hash it and
   again as it is sent (memory: one piece, 1 MiB, per worker; see ``ChunkBody``), and
   completes it. The state file (``$XDG_STATE_HOME/lattice/uploads/``, 0600) is written right
   after the start and removed once the upload is complete, so a crash, Ctrl-C or a dropped
   connection leaves a rerun able to go on without resending what the server holds. A rerun
   on changed files (another manifest) starts anew and abandons the old upload on the server
   (``DELETE``), removing its state file.

Downloads stream a version's tar and extract it file by file through ``SafeExtractor``:
regular files only, no path leaving the destination, each written to a temporary name and
renamed once whole (and its SHA-256 checked when the server listed it).
"""

from lattice.transfer.chunks import CHUNK_TIMEOUT, SEND_PIECE, Chunk, ChunkBody
from lattice.transfer.download import SafeExtractor, download_archive, safe_member_path
from lattice.transfer.manifest import (
    FileEntry,
    HashCache,
    build_manifest,
    list_files,
    manifest_digest,
)
from lattice.transfer.state import TransferError, state_dir, write_private
from lattice.transfer.upload import (
    CHUNK_ATTEMPTS,
    MAX_WORKERS,
    Uploader,
    UploadOutcome,
    UploadTarget,
    check_workers,
)

__all__ = [
    "CHUNK_ATTEMPTS",
    "CHUNK_TIMEOUT",
    "MAX_WORKERS",
    "SEND_PIECE",
    "Chunk",
    "ChunkBody",
    "FileEntry",
    "HashCache",
    "SafeExtractor",
    "TransferError",
    "UploadOutcome",
    "UploadTarget",
    "Uploader",
    "build_manifest",
    "check_workers",
    "download_archive",
    "list_files",
    "manifest_digest",
    "safe_member_path",
    "state_dir",
    "write_private",
]
