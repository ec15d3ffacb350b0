"""Token-id arrays (what LangChain's OpenAIEmbeddings sends by default) back to text.

OpenAI clients may send `input` as tiktoken ids instead of text. Those ids mean nothing to
our model, so we decode them with the encoding they came from (cl100k_base by default) and
embed the text: the vectors are exactly those of the original text. Decoding needs only the
rank table (base64 token bytes -> id, tiktoken's `.tiktoken` format) and the special tokens,
so tiktoken itself is not needed at run time. `make setup` installs the table, checked by
sha256 (scripts/fetch_encodings.py). It is parsed on first use, so cold starts never pay.
"""

from __future__ import annotations

import base64
import gzip
import threading
from dataclasses import dataclass
from pathlib import Path

from embedding_service.errors import bad_request


@dataclass(frozen=True)
class EncodingSpec:
    file: str  # name of the gzip-compressed rank file in the encodings folder
    ordinary_tokens: int  # ids 0..ordinary_tokens-1 are all defined (the OpenAPI document's bound)
    special_tokens: dict[int, str]  # id -> text, as tiktoken's openai_public.py defines them


ENCODINGS = {
    "cl100k_base": EncodingSpec(
        "cl100k_base.tiktoken.gz",
        100256,
        {100257: "<|endoftext|>", 100258: "<|fim_prefix|>", 100259: "<|fim_middle|>",
         100260: "<|fim_suffix|>", 100276: "<|endofprompt|>"},
    ),
    "o200k_base": EncodingSpec(
        "o200k_base.tiktoken.gz", 199998, {199999: "<|endoftext|>", 200018: "<|endofprompt|>"}
    ),
}


class EncodingFilesError(RuntimeError):
    """The rank file is missing or malformed: start-up stops with what to run."""


class UnknownTokenId(ValueError):
    """An id the encoding does not define; `position` is its index in the array."""

    def __init__(self, token_id: int, position: int, vocabulary: int):
        super().__init__(f"token id {token_id} at position {position} is not in the vocabulary")
        self.token_id, self.position, self.vocabulary = token_id, position, vocabulary


class TokenArrayDecoder:
    """ids -> text for one tiktoken encoding; thread-safe, table loaded once, lazily."""

    def __init__(self, name: str, encodings_dir: Path):
        self.name = name
        self.spec = ENCODINGS[name]
        self.path = Path(encodings_dir) / self.spec.file
        if not self.path.is_file():
            raise EncodingFilesError(
                f"{self.path} is missing: token-id arrays ({name}) need its rank file; run `make setup` "
                "(scripts/fetch_encodings.py), or set TOKEN_ARRAY_ENCODING=none to refuse token arrays"
            )
        self._table: list[bytes | None] | None = None
        self._lock = threading.Lock()

    @property
    def table(self) -> list[bytes | None]:
        if self._table is None:
            with self._lock:
                if self._table is None:
                    self._table = self._load()
        return self._table

    def _load(self) -> list[bytes | None]:
        ranks: dict[int, bytes] = {}
        try:
            with gzip.open(self.path, "rb") as handle:
                for line in handle:
                    token, rank = line.split()
                    ranks[int(rank)] = base64.b64decode(token, validate=True)
        except (OSError, ValueError) as error:
            raise EncodingFilesError(f"{self.path} is not a tiktoken rank file: {error}") from None
        ranks.update({rank: text.encode() for rank, text in self.spec.special_tokens.items()})
        table: list[bytes | None] = [None] * (max(ranks) + 1)
        for rank, token in ranks.items():
            table[rank] = token
        return table

    def decode(self, ids: list[int]) -> str:
        """The text tiktoken's `decode` gives: bytes that are not valid UTF-8 on their own
        (an array cut inside a character) become U+FFFD, exactly as tiktoken does."""
        table = self.table
        parts = []
        for position, token_id in enumerate(ids):
            token = table[token_id] if 0 <= token_id < len(table) else None
            if token is None:
                raise UnknownTokenId(token_id, position, len(table))
            parts.append(token)
        return b"".join(parts).decode("utf-8", errors="replace")


def decode_input(decoder: TokenArrayDecoder, arrays: list, max_chars: int) -> list[str]:
    """A validated `input` of token ids (one list, or a list of lists) -> one text per list,
    with a 400 naming the item and the id when an id is outside the vocabulary."""
    flat = isinstance(arrays[0], int)
    texts = []
    for index, ids in enumerate([arrays] if flat else arrays):
        where = "input" if flat else f"input[{index}]"
        try:
            text = decoder.decode(ids)
        except UnknownTokenId as error:
            raise bad_request(
                f"{where}: token id {error.token_id} (position {error.position}) is not in "
                f"{decoder.name}'s vocabulary (ids 0..{error.vocabulary - 1}); this server decodes "
                f"token arrays as {decoder.name} (TOKEN_ARRAY_ENCODING), or send text",
                param="input",
            ) from None
        if len(text) > max_chars:
            raise bad_request(
                f"{where} decodes to {len(text)} characters; at most {max_chars}", param="input"
            )
        texts.append(text)
    return texts
