"""Preference pairs in the Pick-a-Pic v2 column schema: caption, jpg_0, jpg_1, label_0, label_1.

Reading and validating pair files, decoding images, and :class:`PairData`: training batches with a
seeded train/validation split and a data order that is a pure function of (seed, position), so a
resumed run sees exactly the same batches.

One loader serves the toy pairs shipped in assets/ and a local copy of Pick-a-Pic (parquet files
or a folder of them). Images are encoded bytes (PNG or JPEG); label_0 = 1 means image 0 won,
0.5/0.5 is a tie. Batches are laid out ``[winners; losers]``.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError

REQUIRED_COLUMNS = ("caption", "jpg_0", "jpg_1", "label_0", "label_1")


def read_pairs(path: str | Path, *, drop_ties: bool = True) -> pd.DataFrame:
    """Read preference pairs; validate columns; drop ties (label_0 == label_1).

    ``path`` is a parquet file, a folder of ``*.parquet`` files (a local Pick-a-Pic copy), a folder
    with ``pairs.jsonl`` (see :func:`read_jsonl_folder`), or an ``hf://datasets/...`` parquet URL
    (read through huggingface_hub where the hub is reachable). Raises ValueError naming the file
    and what is wrong.
    """
    if str(path).startswith("hf://"):
        return _finish_pairs(_read_parquet(str(path)), str(path), drop_ties)
    path = Path(path)
    if path.is_dir() and (path / "pairs.jsonl").is_file():
        return _finish_pairs(read_jsonl_folder(path), str(path / "pairs.jsonl"), drop_ties)
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    if not files or not files[0].exists():
        raise ValueError(f"no preference pairs at {path} (expected a .parquet file, a folder of them, "
                         "or a folder with pairs.jsonl)")
    frames = [_finish_pairs(_read_parquet(file), str(file), drop_ties=False) for file in files]
    return _finish_pairs(pd.concat(frames, ignore_index=True), str(path), drop_ties)


def _read_parquet(file) -> pd.DataFrame:
    try:
        return pd.read_parquet(file)
    except Exception as err:  # pyarrow raises several types for non-parquet input
        raise ValueError(f"{file} is not a readable parquet file ({err})") from err


def _finish_pairs(frame: pd.DataFrame, where: str, drop_ties: bool) -> pd.DataFrame:
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{where} lacks the column(s) {missing}; the Pick-a-Pic schema needs {list(REQUIRED_COLUMNS)}")
    if drop_ties:
        frame = frame[frame.label_0 != frame.label_1]
    return frame.reset_index(drop=True)


def read_jsonl_folder(folder: str | Path) -> pd.DataFrame:
    """A local folder format: ``pairs.jsonl`` with one object per line,
    ``{"caption": ..., "image_0": "a.png", "image_1": "b.jpg", "label_0": 1.0}`` (``label_1``
    defaults to ``1 - label_0``), image paths relative to the folder and inside it."""
    folder = Path(folder).resolve()
    rows = []
    for n, line in enumerate((folder / "pairs.jsonl").read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            record = {"caption": str(item["caption"]), "label_0": float(item["label_0"])}
            record["label_1"] = float(item.get("label_1", 1.0 - record["label_0"]))
            for k in (0, 1):
                image = (folder / item[f"image_{k}"]).resolve()
                if folder not in image.parents:
                    raise ValueError(f"image_{k} points outside the folder")
                record[f"jpg_{k}"] = image.read_bytes()
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, OSError) as err:
            raise ValueError(f"{folder / 'pairs.jsonl'} line {n}: {err!r}") from err
        rows.append(record)
    return pd.DataFrame(rows, columns=["caption", "jpg_0", "jpg_1", "label_0", "label_1"])


def decode_image(data: bytes, *, size: int | None = None, where: str = "image") -> np.ndarray:
    """Encoded bytes -> uint8 ``[H, W, 3]`` (RGB), resized to ``size`` if given."""
    try:
        image = Image.open(io.BytesIO(data)).convert("RGB")
    except (UnidentifiedImageError, OSError, TypeError) as err:
        raise ValueError(f"{where} is not a readable image ({err})") from err
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8)


def winner_loser(row: pd.Series, *, size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode one pair as (winner, loser) images."""
    first_wins = row["label_0"] > row["label_1"]
    a = decode_image(row["jpg_0"], size=size, where=f"jpg_0 of pair {row.name}")
    b = decode_image(row["jpg_1"], size=size, where=f"jpg_1 of pair {row.name}")
    return (a, b) if first_wins else (b, a)


@dataclass
class PairBatch:
    captions: list[str]  # [P]
    images: torch.Tensor  # [2P, 3, H, W] in [-1, 1], laid out [winners; losers]


class PairData:
    """Decoded pairs (cached on first use) with a seeded split.

    Args:
        frame: rows in the Pick-a-Pic schema (ties already dropped).
        size: image size fed to the model (decode resizes to it).
        val_fraction: share of pairs held back for validation.
        seed: fixes the split and the data order.
        random_flip: flip a pair (both images) horizontally with probability 1/2.
    """

    def __init__(self, frame: pd.DataFrame, *, size: int, val_fraction: float = 0.05, seed: int = 0,
                 random_flip: bool = False) -> None:
        if len(frame) < 2:
            raise ValueError(f"need at least 2 preference pairs, got {len(frame)}")
        self.frame, self.size, self.seed, self.random_flip = frame.reset_index(drop=True), size, seed, random_flip
        order = np.random.default_rng([seed, 7]).permutation(len(frame))
        n_val = int(round(len(frame) * val_fraction))
        n_val = min(n_val, len(frame) - 1)
        self.val_index, self.train_index = order[:n_val], order[n_val:]
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i not in self._cache:
            self._cache[i] = winner_loser(self.frame.iloc[i], size=self.size)
        return self._cache[i]

    def check_images(self, limit: int | None = None) -> None:
        """Decode every (or the first ``limit``) training pair now: a bad image fails before training."""
        for i in self.train_index[:limit]:
            self._pair(int(i))

    def train_indices(self, start: int, count: int) -> np.ndarray:
        """Pairs ``start .. start+count`` of the infinite stream of epochs (each epoch reshuffled
        by (seed, epoch))."""
        n = len(self.train_index)
        positions = np.arange(start, start + count)
        out = np.empty(count, dtype=np.int64)
        for epoch in np.unique(positions // n):
            perm = np.random.default_rng([self.seed, int(epoch)]).permutation(n)
            sel = positions // n == epoch
            out[sel] = self.train_index[perm[positions[sel] % n]]
        return out

    def batch(self, indices: np.ndarray, flip_seed: int | None = None) -> PairBatch:
        winners, losers, captions = [], [], []
        flips = np.random.default_rng(flip_seed).random(len(indices)) < 0.5 if self.random_flip else None
        for k, i in enumerate(indices):
            w, l = self._pair(int(i))  # noqa: E741
            if flips is not None and flips[k]:
                w, l = w[:, ::-1], l[:, ::-1]  # noqa: E741
            winners.append(w)
            losers.append(l)
            captions.append(str(self.frame.caption.iloc[int(i)]))
        images = np.stack(winners + losers).astype(np.float32) / 127.5 - 1.0
        return PairBatch(captions, torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))))


# ----- writing pairs ---------------------------------------------------------------------------------
def png_bytes(image: np.ndarray) -> bytes:
    """uint8 ``[H, W, 3]`` -> PNG bytes (the Pick-a-Pic schema stores images as encoded bytes)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def write_parquet(frame: pd.DataFrame, path: str | Path, metadata: dict | None = None) -> Path:
    """Write a frame as parquet atomically (temporary file, then rename), with ``metadata`` as JSON
    in the file's schema metadata (key ``dde``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dde.io import _atomic

    table = pa.Table.from_pandas(frame, preserve_index=False)
    if metadata is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               b"dde": json.dumps(metadata, default=str).encode()})
    return _atomic(path, lambda tmp: pq.write_table(table, tmp))
