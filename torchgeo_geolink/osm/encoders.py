# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Tag encoders: text embeddings of GeoLink tag strings, and a cache."""

import hashlib
import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from ..errors import TagEncoderWeightsNotFoundError

__all__ = (
    'CLIPTagEncoder',
    'CachedTagEncoder',
    'HashingTagEncoder',
    'SentenceTransformerTagEncoder',
    'TagEncoder',
    'make_tag_encoder',
)

_WORD = re.compile(r'[^\W_]+', re.UNICODE)


@runtime_checkable
class TagEncoder(Protocol):
    """Protocol of tag encoders: embed tag strings into ``dim``-d vectors.

    .. versionadded:: 0.1
    """

    #: Width of the embeddings.
    dim: int

    @property
    def identity(self) -> str:
        """A string naming the encoder and its settings."""
        ...

    def encode(self, texts: Sequence[str]) -> Tensor:
        """Embed tag strings.

        Args:
            texts: The strings.

        Returns:
            float32 tensor of shape ``(len(texts), dim)``.
        """
        ...


class HashingTagEncoder:
    """Offline, weight-free, deterministic tag encoder (signed feature hashing).

    Each ``'key:value'`` string is represented by three groups of hashed features: its
    key, the whole string and the words of its value (so ``landuse:residential`` and
    ``building:residential`` share a component). Each feature adds ``+-1`` (sign and
    column from a BLAKE2b digest, stable across processes and platforms) to
    ``num_hashes`` columns; the three groups get equal total weight and the result is
    scaled to norm ``scale``.

    .. versionadded:: 0.1
    """

    _VERSION = 1

    def __init__(self, dim: int = 512, num_hashes: int = 2, scale: float = 1.0) -> None:
        """Initialize the encoder.

        Args:
            dim: Embedding width.
            num_hashes: Columns written per hashed feature.
            scale: Norm of each embedding.

        Raises:
            ValueError: If an argument is not positive.
        """
        if dim < 1 or num_hashes < 1 or not scale > 0:
            msg = f'dim, num_hashes and scale must be positive, got {dim}, {num_hashes}, {scale}'
            raise ValueError(msg)
        self.dim = dim
        self.num_hashes = num_hashes
        self.scale = scale

    @property
    def identity(self) -> str:
        """Identity string of the encoder (version and settings)."""
        return (
            f'hashing-v{self._VERSION}-dim{self.dim}-h{self.num_hashes}-s{self.scale:g}'
        )

    def _hash(self, token: str) -> list[tuple[int, int]]:
        """Columns and signs (+-1) of one hashed feature.

        Args:
            token: the feature.

        Returns:
            ``num_hashes`` pairs ``(column, sign)``.
        """
        digest = hashlib.blake2b(
            token.encode('utf-8'), digest_size=8 * self.num_hashes
        ).digest()
        out = []
        for h in range(self.num_hashes):
            word = int.from_bytes(digest[8 * h : 8 * h + 8], 'little')
            out.append(((word >> 1) % self.dim, 1 if word & 1 else -1))
        return out

    def _features(
        self, text: str, shared: dict[str, list[tuple[int, int]]]
    ) -> tuple[list[int], list[float]]:
        """Hash one string into columns and signed weights.

        Args:
            text: A tag string.
            shared: hashes of the key and word features met so far (they recur across
                strings, whole strings do not); filled as they are met.

        Returns:
            Columns and their signed weights (before normalization).
        """
        key, _, value = text.partition(':')
        words = _WORD.findall(value.lower())
        groups: list[tuple[list[str], float, bool]] = [
            ([f'k\x1f{key}'], 1.0, True),
            ([f'kv\x1f{text}'], 1.0, False),
        ]
        if words:
            groups.append(([f'w\x1f{w}' for w in words], 1.0 / len(words), True))
        columns: list[int] = []
        weights: list[float] = []
        for tokens, weight, recurs in groups:
            for token in tokens:
                hashed = shared.get(token) if recurs else None
                if hashed is None:
                    hashed = self._hash(token)
                    if recurs:
                        shared[token] = hashed
                for column, sign in hashed:
                    columns.append(column)
                    weights.append(weight if sign > 0 else -weight)
        return columns, weights

    def encode(self, texts: Sequence[str]) -> Tensor:
        """Embed tag strings.

        Args:
            texts: The strings.

        Returns:
            float32 tensor ``(len(texts), dim)``, each row of norm ``scale`` (zero for
            the empty string).
        """
        rows: list[int] = []
        columns: list[int] = []
        weights: list[float] = []
        shared: dict[str, list[tuple[int, int]]] = {}
        for row, text in enumerate(texts):
            if not text:
                continue
            c, w = self._features(text, shared)
            rows.extend([row] * len(c))
            columns.extend(c)
            weights.extend(w)
        # bincount adds in input order, as np.add.at does: the same sums, faster
        cells = np.asarray(rows, dtype=np.int64) * self.dim
        cells += np.asarray(columns, dtype=np.int64)
        out = np.bincount(
            cells,
            weights=np.asarray(weights, dtype=np.float64),
            minlength=len(texts) * self.dim,
        )
        out = out.astype(np.float64, copy=False).reshape(len(texts), self.dim)
        norm = np.linalg.norm(out, axis=1, keepdims=True)
        out = np.divide(out * self.scale, norm, out=np.zeros_like(out), where=norm > 0)
        return torch.from_numpy(out.astype(np.float32))

    def __repr__(self) -> str:
        """Return a short description.

        Returns:
            The representation.
        """
        return f'{type(self).__name__}(dim={self.dim}, num_hashes={self.num_hashes}, scale={self.scale})'


def _missing_package(package: str, encoder: str) -> ImportError:
    """Build the error raised when an optional text package is absent.

    Args:
        package: The missing import name.
        encoder: The encoder that needs it.

    Returns:
        An ImportError explaining how to install the ``text`` extra.
    """
    return ImportError(
        f'{encoder} needs the optional package {package!r}; install it with '
        f"`pip install 'torchgeo-geolink[text]'` (or use the offline HashingTagEncoder)"
    )


class CLIPTagEncoder:
    """The reference GeoLink tag encoder: the text tower of CLIP.

    A tag embedding is the mean of CLIP's ``last_hidden_state`` (after the final
    LayerNorm) over the tokens after BOS, EOS included, as the reference does. Strings
    are encoded in padded batches; CLIP's causal attention makes this equal to the
    reference's one-string-at-a-time forward. Strings longer than the model's context
    are truncated (the reference crashes on them).

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        model: str | Path = 'openai/clip-vit-base-patch16',
        device: str | torch.device = 'cpu',
        batch_size: int = 256,
        local_files_only: bool = True,
    ) -> None:
        """Load the tokenizer and text model from the cache or a folder.

        Args:
            model: A Hugging Face model name (resolved in the local cache) or a folder
                holding the files.
            device: Device to run the text model on.
            batch_size: Strings per forward pass.
            local_files_only: Never download (default); set False to allow Hugging Face
                to fetch the weights.

        Raises:
            ImportError: If ``transformers`` is not installed.
            TagEncoderWeightsNotFoundError: If the weights are not available locally.
        """
        try:
            from transformers import CLIPTextModel, CLIPTokenizer
        except ImportError as error:
            raise _missing_package('transformers', type(self).__name__) from error
        self.model_name = str(model)
        try:
            self.tokenizer = CLIPTokenizer.from_pretrained(
                self.model_name, local_files_only=local_files_only
            )
            self.model = CLIPTextModel.from_pretrained(
                self.model_name, local_files_only=local_files_only
            )
        except OSError as error:
            msg = (
                f'CLIP text model {self.model_name!r} was not found locally ({error}). Provide it by downloading '
                f'it once into the Hugging Face cache (`huggingface-cli download {self.model_name}`, or set '
                f'HF_HOME to a cache that holds it), or pass the path of a folder with its config, weights and '
                f'tokenizer files as `model`.'
            )
            raise TagEncoderWeightsNotFoundError(msg) from error
        self.device = torch.device(device)
        self.model.eval().to(self.device)
        self.batch_size = batch_size
        self.dim = int(self.model.config.hidden_size)
        self.max_length = int(self.model.config.max_position_embeddings)

    @property
    def identity(self) -> str:
        """Identity string (encoder kind, model name and width)."""
        return f'clip-text-meanafterbos:{self.model_name}:dim{self.dim}'

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> Tensor:
        """Embed tag strings.

        Args:
            texts: The strings.

        Returns:
            float32 tensor ``(len(texts), dim)`` on the CPU.
        """
        chunks = [torch.empty(0, self.dim)]
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            inputs = self.tokenizer(
                batch,
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors='pt',
            ).to(self.device)
            hidden = self.model(**inputs).last_hidden_state
            mask = inputs['attention_mask'].clone()
            mask[:, 0] = 0  # skip BOS, keep every later real token (EOS included)
            mask = mask.unsqueeze(-1).to(hidden.dtype)
            chunks.append(
                ((hidden * mask).sum(1) / mask.sum(1).clamp_min(1)).float().cpu()
            )
        return torch.cat(chunks)

    def __repr__(self) -> str:
        """Return a short description.

        Returns:
            The representation.
        """
        return f'{type(self).__name__}(model={self.model_name!r}, dim={self.dim})'


class SentenceTransformerTagEncoder:
    """Tag encoder backed by a ``sentence-transformers`` model.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        model: str | Path = 'sentence-transformers/all-MiniLM-L6-v2',
        device: str | torch.device = 'cpu',
        batch_size: int = 256,
        normalize: bool = False,
        local_files_only: bool = True,
    ) -> None:
        """Load the model from the Hugging Face cache or a local folder.

        Args:
            model: A model name (resolved in the local cache) or a folder.
            device: Device to run the model on.
            batch_size: Strings per forward pass.
            normalize: L2-normalize the embeddings.
            local_files_only: Never download (default).

        Raises:
            ImportError: If ``sentence-transformers`` is not installed.
            TagEncoderWeightsNotFoundError: If the weights are not available locally.
        """
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as error:
            raise _missing_package(
                'sentence_transformers', type(self).__name__
            ) from error
        self.model_name = str(model)
        try:
            self.model = SentenceTransformer(
                self.model_name, device=str(device), local_files_only=local_files_only
            )
        except OSError as error:
            msg = (
                f'sentence-transformers model {self.model_name!r} was not found locally ({error}). Download it '
                f'once into the Hugging Face cache (`huggingface-cli download {self.model_name}`) or pass the '
                f'path of a saved model folder as `model`.'
            )
            raise TagEncoderWeightsNotFoundError(msg) from error
        dim = self.model.get_sentence_embedding_dimension()
        if dim is None:  # pragma: no cover - every pooling model reports its width
            dim = int(self.model.encode(['x'], convert_to_tensor=True).shape[-1])
        self.dim = int(dim)
        self.batch_size = batch_size
        self.normalize = normalize

    @property
    def identity(self) -> str:
        """Identity string (encoder kind, model name, width and normalization)."""
        return f'sentence-transformers:{self.model_name}:dim{self.dim}:norm{int(self.normalize)}'

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> Tensor:
        """Embed tag strings.

        Args:
            texts: The strings.

        Returns:
            float32 tensor ``(len(texts), dim)`` on the CPU.
        """
        if not texts:
            return torch.empty(0, self.dim)
        out = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_tensor=True,
            normalize_embeddings=self.normalize,
            show_progress_bar=False,
        )
        return out.float().cpu()


class CachedTagEncoder:
    """Wrap a tag encoder so that each distinct string is encoded once.

    Misses of an :meth:`encode` call are encoded together in one batched call. With
    ``cache_dir`` the embeddings also persist on disk, in a folder named after the
    wrapped encoder's :attr:`identity` (so different encoders never mix): every call
    that encoded new strings writes them as one new shard file (atomic rename, unique
    name, so concurrent processes never clobber each other), and all shards are read
    when the cache is created.

    .. versionadded:: 0.1
    """

    def __init__(
        self, encoder: TagEncoder, cache_dir: str | Path | None = None
    ) -> None:
        """Initialize the cache.

        Args:
            encoder: The encoder to wrap.
            cache_dir: Root folder of the on-disk cache; None keeps the cache in memory
                only.
        """
        self.encoder = encoder
        self.dim = encoder.dim
        self._index: dict[str, int] = {}
        self._rows: list[Tensor] = [torch.empty(0, self.dim)]
        self._table: Tensor = torch.empty(0, self.dim)
        self.cache_dir: Path | None = None
        if cache_dir is not None:
            digest = hashlib.blake2b(
                encoder.identity.encode('utf-8'), digest_size=8
            ).hexdigest()
            slug = re.sub(r'[^A-Za-z0-9.-]+', '_', encoder.identity)[:60]
            self.cache_dir = Path(cache_dir) / f'{slug}-{digest}'
            self._load()

    @property
    def identity(self) -> str:
        """Identity of the wrapped encoder (caching does not change the embeddings)."""
        return self.encoder.identity

    def __len__(self) -> int:
        """Return the number of cached strings.

        Returns:
            The number of distinct strings held.
        """
        return len(self._index)

    def _add(self, strings: Sequence[str], embeddings: Tensor) -> None:
        """Add embeddings to the in-memory table.

        Args:
            strings: Distinct strings not yet cached.
            embeddings: Their embeddings ``(len(strings), dim)``.
        """
        start = len(self._index)
        for offset, text in enumerate(strings):
            self._index[text] = start + offset
        self._rows.append(embeddings.detach().to('cpu', torch.float32))
        self._table = torch.empty(0, self.dim)  # rebuilt lazily

    def _matrix(self) -> Tensor:
        """Return all cached embeddings as one matrix (row = index of the string).

        Returns:
            float32 tensor ``(len(self), dim)``.
        """
        if self._table.shape[0] != len(self._index):
            self._table = torch.cat(self._rows)
            self._rows = [self._table]
        return self._table

    def _load(self) -> None:
        """Read every shard of the on-disk cache folder."""
        assert self.cache_dir is not None
        if not self.cache_dir.is_dir():
            return
        for shard in sorted(self.cache_dir.glob('*.pt')):
            payload = torch.load(shard, map_location='cpu', weights_only=True)
            strings, embeddings = payload['strings'], payload['embeddings']
            if embeddings.shape != (len(strings), self.dim):
                continue  # a foreign or truncated file: ignore it rather than mix widths
            keep = [i for i, s in enumerate(strings) if s not in self._index]
            if keep:
                self._add([strings[i] for i in keep], embeddings[keep])

    def _save(self, strings: list[str], embeddings: Tensor) -> None:
        """Write new embeddings as one shard of the on-disk cache.

        Args:
            strings: The newly encoded strings.
            embeddings: Their embeddings.
        """
        assert self.cache_dir is not None
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        name = uuid.uuid4().hex
        tmp = self.cache_dir / f'.{name}.tmp'
        torch.save({'strings': strings, 'embeddings': embeddings.contiguous()}, tmp)
        os.replace(tmp, self.cache_dir / f'{name}.pt')

    def encode(self, texts: Sequence[str]) -> Tensor:
        """Embed tag strings, encoding only those never seen before.

        Args:
            texts: The strings (repeats allowed).

        Returns:
            float32 tensor ``(len(texts), dim)``.
        """
        index = self._index
        misses = list(dict.fromkeys(t for t in texts if t not in index))
        if misses:
            embeddings = self.encoder.encode(misses).detach().to('cpu', torch.float32)
            if embeddings.shape != (len(misses), self.dim):
                msg = (
                    f'{self.encoder!r} returned embeddings of shape {tuple(embeddings.shape)} for '
                    f'{len(misses)} strings, expected ({len(misses)}, {self.dim})'
                )
                raise ValueError(msg)
            self._add(misses, embeddings)
            if self.cache_dir is not None:
                self._save(misses, embeddings)
        rows = torch.as_tensor([index[t] for t in texts], dtype=torch.long)
        return self._matrix().index_select(0, rows)

    def __repr__(self) -> str:
        """Return a short description.

        Returns:
            The representation.
        """
        return f'{type(self).__name__}({self.encoder!r}, cache_dir={self.cache_dir}, size={len(self)})'


def make_tag_encoder(
    name: Literal['hashing', 'clip', 'sentence-transformers'],
    model: str | None = None,
    dim: int = 512,
    cache_dir: str | None = None,
) -> TagEncoder:
    """Build a tag encoder from plain options (as given on the command line or in YAML).

    Args:
        name: ``'hashing'`` (offline, default), ``'clip'`` (GeoLink's reference) or
            ``'sentence-transformers'``.
        model: model name or folder of the text model (None: the encoder's default).
        dim: embedding width of the hashing encoder.
        cache_dir: folder of an on-disk embedding cache (None: in memory only).

    Returns:
        The encoder (wrapped in a cache for the text models).

    Raises:
        ValueError: if *name* is unknown.

    .. versionadded:: 0.1
    """
    match name:
        case 'hashing':
            return HashingTagEncoder(dim=dim)
        case 'clip':
            encoder: TagEncoder = CLIPTagEncoder(model) if model else CLIPTagEncoder()
        case 'sentence-transformers':
            encoder = (
                SentenceTransformerTagEncoder(model)
                if model
                else SentenceTransformerTagEncoder()
            )
        case _:
            raise ValueError(
                f"tag_encoder must be 'hashing', 'clip' or 'sentence-transformers', got {name!r}"
            )
    return CachedTagEncoder(encoder, cache_dir)
