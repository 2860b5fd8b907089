"""The request cache: every answer a backend gave, keyed by what was asked, in one SQLite file.

Keys are sha256 digests of the backend identity and the full request; generate keys also name the
sample index and that completion's own seed, so sampled completions are cached one by one and a
resumed run asks only for the indices it lacks.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any, Iterable, Mapping

from evalkit.backend import GenerateRequest, LoglikelihoodRequest


def user_cache_dir() -> Path:
    """Where evalkit keeps things worth keeping between runs (expected outputs, generated models):
    $EVALKIT_CACHE_DIR, else ~/.cache/evalkit."""
    root = os.environ.get("EVALKIT_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "evalkit"


def _digest(parts: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def generate_key(identity: str, request: GenerateRequest, offset: int) -> str:
    """Key of completion `offset` (0-based within the request) of a generate request."""
    ref_index = request.ref.first_index if request.ref else 0
    return _digest(
        {
            "kind": "generate",
            "backend": identity,
            "prompt": request.prompt,
            "messages": [dict(m) for m in request.messages] if request.messages else None,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "max_tokens": request.max_tokens,
            "stop": list(request.stop),
            "seed": None if request.seed is None else request.seed + offset,
            "sample_index": ref_index + offset,
        }
    )


def loglikelihood_key(identity: str, request: LoglikelihoodRequest) -> str:
    # Length-prefixed fields, not JSON: this runs once per choice of every sample (4 x 14,042 for MMLU).
    digest = hashlib.sha256(b"loglikelihood")
    for text in (identity, request.context, request.continuation):
        data = text.encode()
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


class RequestCache:
    """A key -> JSON value store. Safe against a crash mid-write (SQLite transactions) and shared by
    every run that points at the same file."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._db.commit()

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        keys = list(keys)
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, value in self._db.execute(f"SELECT key, value FROM responses WHERE key IN ({marks})", chunk):
                found[key] = json.loads(value)
        return found

    def put_many(self, items: Mapping[str, Any]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)",
                [(key, json.dumps(value, ensure_ascii=False)) for key, value in items.items()],
            )

    def close(self) -> None:
        self._db.close()


class NoCache:
    """Stands in for RequestCache when caching is off or the backend's answers are free."""

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        return {}

    def put_many(self, items: Mapping[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass
