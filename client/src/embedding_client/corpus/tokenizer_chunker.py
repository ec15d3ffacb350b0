"""`--tokenizer DIR`: chunk here, for a target that cannot chunk (another OpenAI-compatible server).

The chunker is the service's own (`embedding_service.chunking`, from the `local` extra as for
`--target local`), run on the tokenizer of a sentence-transformers folder: its `tokenizer.json`, its
maximum sequence length and lower-casing, exactly as the service would load them. The spans are
then the ones our service would cut for that model, and the other server embeds their text.
"""

from __future__ import annotations

from pathlib import Path

from embedding_client.corpus.errors import InputError
from embedding_client.corpus.target_local import service_module
from embedding_client.corpus.targets import Chunked


class TokenizerChunker:
    def __init__(self, folder: str):
        Chunker = service_module("chunking", "--tokenizer").Chunker
        model_config = service_module("model_config", "--tokenizer")
        tokenization = service_module("tokenization", "--tokenizer")
        ModelFilesError, read_model_spec = model_config.ModelFilesError, model_config.read_model_spec
        load_tokenizer, lowercase_inputs = tokenization.load_tokenizer, tokenization.lowercase_inputs
        path = Path(folder).expanduser()
        try:
            spec = read_model_spec(path)
        except ModelFilesError as error:
            raise InputError(f"--tokenizer {folder}: {error}") from None
        tokenizer = load_tokenizer(path, spec.max_seq_length)
        if spec.do_lower_case:
            lowercase_inputs(tokenizer)
        self._chunker = Chunker.of(tokenizer, spec.max_seq_length)
        self.window = self._chunker.window(None)

    def chunk(self, texts: list[str], chunk_tokens: int, overlap: int) -> list[Chunked]:
        results = [self._chunker.chunk(text, chunk_tokens, overlap) for text in texts]
        return [Chunked(total, [(c.start, c.end, c.tokens) for c in chunks]) for chunks, total in results]
