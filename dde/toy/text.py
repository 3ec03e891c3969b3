"""The world's word-level tokenizer and the tiny CLIP text encoder config."""

from __future__ import annotations

import torch

from dde.toy.world import BACKGROUNDS, COLOURS, POSITIONS, SHAPES, SIZES

SPECIAL = ("<pad>", "<bos>", "<eos>", "<unk>")
WORDS = sorted({"a", "an", "on", "the", "in", "and", "background", "center", *SHAPES, *COLOURS, *SIZES,
                *POSITIONS, *BACKGROUNDS})
VOCAB = (*SPECIAL, *WORDS)
MAX_LENGTH = 16


class ToyTokenizer:
    """Maps lower-cased words of the grammar to ids; ``[bos] words [eos] pad...``, length 16.

    Unknown words map to ``<unk>`` (see :meth:`unknown_words` to tell the user); captions longer
    than 14 words are cut.
    """

    def __init__(self, vocab: tuple[str, ...] = VOCAB, max_length: int = MAX_LENGTH) -> None:
        self.vocab, self.max_length = tuple(vocab), max_length
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = (self.index[s] for s in SPECIAL)

    @staticmethod
    def words(text: str) -> list[str]:
        return text.lower().replace(",", " ").replace(".", " ").split()

    def unknown_words(self, text: str) -> list[str]:
        return [w for w in self.words(text) if w not in self.index]

    def __call__(self, texts: list[str]) -> torch.Tensor:
        """``N`` strings -> ``[N, max_length]`` long ids."""
        ids = torch.full((len(texts), self.max_length), self.pad_id, dtype=torch.long)
        for row, text in enumerate(texts):
            tokens = [self.index.get(w, self.unk_id) for w in self.words(text)][: self.max_length - 2]
            seq = [self.bos_id, *tokens, self.eos_id]
            ids[row, : len(seq)] = torch.tensor(seq)
        return ids


def text_encoder_config(hidden: int = 64) -> dict:
    """A transformers CLIPTextConfig (as a dict) for the world's vocabulary."""
    return {"vocab_size": len(VOCAB), "hidden_size": hidden, "intermediate_size": hidden * 2,
            "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": MAX_LENGTH,
            "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "projection_dim": hidden}
