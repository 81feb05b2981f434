"""A generator's prompt encoders: the webui-style conditioning of its text encoder(s),
one encoder per clip skip, with the textual-inversion embeddings folder read once (and
again after `reload`, which the server's refresh route may call from another thread)."""

from __future__ import annotations

from pathlib import Path


class PromptEncoders:
    def __init__(self, pipe, embeddings_dir, warnings: list):
        self.pipe = pipe
        self.embeddings_dir = embeddings_dir
        self.warnings = warnings  # the generator's list: messages for the user
        self._encoders: dict[int, object] = {}
        self._embeddings = None

    def for_clip_skip(self, clip_skip: int):
        # Reads each shared field once into a local: `reload` may run in another thread
        # while a request is being encoded.
        from .prompt.sdxl import is_sdxl_pipeline

        encoder = self._encoders.get(clip_skip)
        if encoder is None:
            encoder = self._sdxl(clip_skip) if is_sdxl_pipeline(self.pipe) else self._plain(clip_skip)
            self._encoders = {**self._encoders, clip_skip: encoder}
        encoder._empty = None  # a LoRA on the text encoder changes even the empty prompt
        return encoder

    def reload(self) -> None:
        self._embeddings = None
        self._encoders = {}

    def _sdxl(self, clip_skip: int):
        from .prompt.sdxl import SDXLPromptEncoder

        folder = self.embeddings_dir
        if folder is not None and Path(folder).is_dir() and any(Path(folder).iterdir()):
            message = "textual-inversion embeddings are not read for SDXL models yet; the folder is ignored"
            if message not in self.warnings:
                self.warnings.append(message)
        pipe = self.pipe
        return SDXLPromptEncoder(pipe.tokenizer, pipe.text_encoder, pipe.tokenizer_2, pipe.text_encoder_2,
                                 clip_skip=clip_skip)

    def _plain(self, clip_skip: int):
        from .extra_networks import load_embeddings
        from .prompt.conditioning import PromptEncoder

        embeddings = self._embeddings
        if embeddings is None:
            width = self.pipe.text_encoder.config.hidden_size
            embeddings, warnings = load_embeddings(self.embeddings_dir, width)
            self.warnings.extend(warnings)
            self._embeddings = embeddings
        return PromptEncoder(self.pipe.tokenizer, self.pipe.text_encoder, clip_skip=clip_skip, embeddings=embeddings)
