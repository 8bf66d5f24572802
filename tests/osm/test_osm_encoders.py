# Copyright (c) torchgeo-geolink Contributors. All rights reserved.
# Licensed under the MIT License.

"""Tag encoders: hashing determinism, caching (memory, disk), CLIP on a tiny model."""

import hashlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from torch import Tensor

from torchgeo_geolink.errors import TagEncoderWeightsNotFoundError
from torchgeo_geolink.osm import (
    CachedTagEncoder,
    CLIPTagEncoder,
    HashingTagEncoder,
    SentenceTransformerTagEncoder,
    TagEncoder,
)


class CountingEncoder(HashingTagEncoder):
    """A real hashing encoder that records what it is asked to encode."""

    def __init__(self, dim: int = 64) -> None:
        super().__init__(dim=dim)
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str]) -> Tensor:
        self.calls.append(list(texts))
        return super().encode(texts)


def test_hashing_encoder_uses_stable_hashes() -> None:
    """Columns and signs come from BLAKE2b (stable across runs), not salted hash()."""
    encoder = HashingTagEncoder(dim=512, num_hashes=2)
    vector = encoder.encode(['highway:service'])[0]
    expected = torch.zeros(512, dtype=torch.float64)
    for token, weight in (
        ('k\x1fhighway', 1.0),
        ('kv\x1fhighway:service', 1.0),
        ('w\x1fservice', 1.0),
    ):
        digest = hashlib.blake2b(token.encode(), digest_size=16).digest()
        for h in range(2):
            word = int.from_bytes(digest[8 * h : 8 * h + 8], 'little')
            expected[(word >> 1) % 512] += weight if word & 1 else -weight
    torch.testing.assert_close(vector, (expected / expected.norm()).float())
    torch.testing.assert_close(
        HashingTagEncoder().encode(['name:東京 "q";x=>y']),
        encoder.encode(['name:東京 "q";x=>y']),
    )


def test_hashing_encoder_properties() -> None:
    encoder = HashingTagEncoder(dim=512)
    assert isinstance(encoder, TagEncoder)
    out = encoder.encode(
        [
            'landuse:residential',
            'building:residential',
            'landuse:grass',
            'highway:primary',
            '',
        ]
    )
    assert out.shape == (5, 512) and out.dtype == torch.float32
    torch.testing.assert_close(out[:4].norm(dim=1), torch.ones(4))
    assert torch.all(out[4] == 0)
    cos = out @ out.T
    assert cos[0, 1] > 0.2 and cos[0, 2] > 0.2  # shared value word / shared key
    assert abs(cos[0, 3]) < 0.2
    assert encoder.identity != HashingTagEncoder(dim=256).identity
    assert encoder.encode([]).shape == (0, 512)
    with pytest.raises(ValueError, match='positive'):
        HashingTagEncoder(dim=0)


def test_cache_encodes_each_distinct_string_once() -> None:
    inner = CountingEncoder()
    cached = CachedTagEncoder(inner)
    first = cached.encode(['a:1', 'b:2', 'a:1', 'c:3'])
    assert inner.calls == [['a:1', 'b:2', 'c:3']]
    second = cached.encode(['c:3', 'd:4', 'a:1', 'd:4'])
    assert inner.calls[1] == ['d:4']
    cached.encode(['a:1', 'b:2'])
    assert len(inner.calls) == 2 and len(cached) == 4
    direct = HashingTagEncoder(dim=64)
    torch.testing.assert_close(first, direct.encode(['a:1', 'b:2', 'a:1', 'c:3']))
    torch.testing.assert_close(second, direct.encode(['c:3', 'd:4', 'a:1', 'd:4']))
    assert cached.identity == inner.identity and cached.dim == 64


def test_disk_cache_persists_per_identity(tmp_path: Path) -> None:
    first = CachedTagEncoder(CountingEncoder(), cache_dir=tmp_path)
    expected = first.encode(['x:1', 'y:2'])
    first.encode(['z:3'])
    assert len(list(tmp_path.rglob('*.pt'))) == 2

    inner = CountingEncoder()
    second = CachedTagEncoder(inner, cache_dir=tmp_path)
    assert len(second) == 3
    torch.testing.assert_close(second.encode(['x:1', 'y:2']), expected)
    assert inner.calls == []

    other = CountingEncoder(
        dim=32
    )  # different identity: its own folder, nothing reused
    third = CachedTagEncoder(other, cache_dir=tmp_path)
    assert len(third) == 0
    third.encode(['x:1'])
    assert other.calls == [['x:1']]
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 2


def _byte_chars() -> list[str]:
    """The printable stand-in of each byte in byte-level BPE vocabularies."""
    printable = set(range(33, 127)) | set(range(161, 173)) | set(range(174, 256))
    out, extra = [], 0
    for b in range(256):
        if b in printable:
            out.append(chr(b))
        else:
            out.append(chr(256 + extra))
            extra += 1
    return out


@pytest.fixture(scope='module')
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    transformers = pytest.importorskip(
        'transformers', reason='transformers (the text extra) is not installed'
    )
    chars = _byte_chars()
    tokens = [*chars, *(c + '</w>' for c in chars), '<|startoftext|>', '<|endoftext|>']
    tokenizer = transformers.CLIPTokenizer(
        vocab={t: i for i, t in enumerate(tokens)}, merges=[]
    )
    config = transformers.CLIPTextConfig(
        vocab_size=len(tokens),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=40,
        bos_token_id=len(tokens) - 2,
        eos_token_id=len(tokens) - 1,
        pad_token_id=len(tokens) - 1,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('tiny-clip')
    transformers.CLIPTextModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_clip_encoder_matches_unbatched_reference(tiny_clip: Path) -> None:
    import transformers

    texts = ['highway:service', 'a', 'name:Ünïcode "x";y=>z', 'building:yes']
    encoder = CLIPTagEncoder(tiny_clip, batch_size=3)
    assert encoder.dim == 32 and 'tiny-clip' in encoder.identity
    out = encoder.encode(texts)
    tokenizer = transformers.CLIPTokenizer.from_pretrained(tiny_clip)
    model = transformers.CLIPTextModel.from_pretrained(tiny_clip).eval()
    with torch.no_grad():
        for row, text in enumerate(
            texts
        ):  # the reference: one string at a time, mean over tokens after BOS
            inputs = tokenizer(text, return_tensors='pt')
            expected = model(**inputs).last_hidden_state[0, 1:].mean(0)
            torch.testing.assert_close(out[row], expected, atol=1e-5, rtol=1e-5)
    long = encoder.encode(
        ['x' * 100]
    )  # longer than the context: truncated, not a crash
    assert long.shape == (1, 32) and torch.isfinite(long).all()


def test_clip_missing_weights_error() -> None:
    pytest.importorskip('transformers')
    with pytest.raises(
        TagEncoderWeightsNotFoundError, match='no-such-org/no-such-clip'
    ):
        CLIPTagEncoder('no-such-org/no-such-clip')


@pytest.mark.skipif(
    importlib.util.find_spec('sentence_transformers') is not None,
    reason='package installed',
)
def test_sentence_transformers_missing_package_error() -> None:
    with pytest.raises(ImportError, match=r'torchgeo-geolink\[text\]'):
        SentenceTransformerTagEncoder()


@pytest.mark.skipif(
    importlib.util.find_spec('sentence_transformers') is None, reason='not installed'
)
def test_sentence_transformers_missing_weights_error() -> None:
    with pytest.raises(TagEncoderWeightsNotFoundError, match='no-such-model'):
        SentenceTransformerTagEncoder('no-such-org/no-such-model')


@pytest.mark.skipif(
    importlib.util.find_spec('sentence_transformers') is None, reason='not installed'
)
def test_sentence_transformers_encoder_on_a_tiny_local_model(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizer

    words = ['building', 'yes', 'highway', 'primary', 'landuse', 'grass', ':']
    vocab = tmp_path / 'vocab.txt'
    vocab.write_text('\n'.join(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', *words]))
    bert_dir = tmp_path / 'bert'
    BertTokenizer(str(vocab)).save_pretrained(bert_dir)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(words) + 5,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    BertModel(config).save_pretrained(bert_dir)
    st_dir = tmp_path / 'tiny-st'
    transformer = Transformer(str(bert_dir))
    SentenceTransformer(modules=[transformer, Pooling(16)]).save(str(st_dir))

    encoder = SentenceTransformerTagEncoder(st_dir, normalize=True)
    texts = ['building:yes', 'highway:primary', 'landuse:grass']
    out = encoder.encode(texts)
    assert encoder.dim == 16 and out.shape == (3, 16) and out.dtype == torch.float32
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)
    reference = SentenceTransformer(str(st_dir), device='cpu').encode(
        texts, convert_to_tensor=True, normalize_embeddings=True
    )
    assert torch.allclose(out, reference.float(), atol=1e-6)
    assert not torch.allclose(out[0], out[1])
    assert encoder.encode([]).shape == (0, 16)
    assert str(st_dir) in encoder.identity
