"""A byte-level tokenizer: token id = UTF-8 byte value (vocabulary 256, no merges)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ByteTokenizer"]


class ByteTokenizer:
    """``encode(text) -> list[int]`` of UTF-8 bytes and ``decode(ids) -> str``; callable as encode."""

    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")

    def __call__(self, text: str) -> list[int]:
        return self.encode(text)
