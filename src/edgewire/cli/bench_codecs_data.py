"""Measurements of the data codecs: embedding precisions and compact token frames.

Two functions, each returning a JSON-ready dict (the ``edgewire bench codecs`` command
prints them); nothing here parses arguments.

:func:`bench_embeddings` encodes a synthetic corpus at every precision of the
``embeddings`` codec and measures size, fidelity and speed. No embedding model can be
installed offline, so the corpus comes from a generative model built to have the
statistics that matter to quantization and search in real sentence embeddings:

* clustered topics, so that nearest neighbours are meaningful: ``n_topics`` centres in a
  ``rank``-dimensional latent space (standard normal), each vector its topic's centre plus
  ``topic_spread`` times standard normal noise;
* low rank plus noise, anisotropic: the latent vector is scaled by a decaying spectrum
  (``1 / sqrt(1 + k / 4)`` for latent axis ``k``), mapped into ``dim`` dimensions by a random
  orthonormal basis, plus isotropic noise (``noise`` per dimension);
* a common direction shared by every vector (its norm ``common``), which gives the high
  average cosine between unrelated sentences that trained encoders show;
* a few outlier dimensions (``n_outliers``, default 4) with a large value of a fixed sign
  (mean ``outlier_scale``, default 6, times the typical magnitude of a dimension, 30%
  spread), as transformer embeddings have; these set int8's per-vector scale, so they
  matter (with the defaults they hold about a sixth of a vector's squared norm, the mean
  cosine of two unrelated vectors is about 0.2 and of a vector and its nearest
  neighbour about 0.5);
* then every vector is L2-normalised.

Queries are fresh draws from the same model (not corpus members). For each precision:
``bytes_per_vector`` is what a packet of 16 vectors costs per vector as the embeddings
encoder sends it by default, envelope and scales included, zstd-compressed when that saves
5 % (``bytes_per_vector_uncompressed``: the same packets without zstd;
``bytes_per_vector_single``: an uncompressed packet of one vector); ``ratio_vs_float32``
is ``4 * dim`` (the raw float32 bytes of one vector) over ``bytes_per_vector``; cosine is
between each original and decoded vector (mean and minimum over the corpus); recall@10 is,
per query, the overlap of the 10 nearest corpus vectors by cosine in the decoded corpus and
in the original one, divided by 10 and averaged over the queries (queries stay float32);
``encode_MBps`` and ``decode_MBps`` count float32 input bytes (``4 * dim`` per vector)
per second / 1e6, through the whole codec (quantization, envelope, CBOR, zstd as by
default), in packets of 16, the best of three passes.

:func:`bench_tokens` compares a 1,000-token stream in token frames with the same stream as
OpenAI-style ``chat.completion.chunk`` server-sent events. Token ids follow a Zipf-Mandelbrot
law over a 100,000-token vocabulary (``p(rank) ~ 1 / (rank + 2.7) ** 1.07``); since BPE
vocabularies number tokens roughly in the order their merges were learned, which follows
frequency, a token's id is its rank with a log-normal jitter (sorted by
``rank * exp(N(0, 1))``); ``bytes_per_token_shuffled_ids`` repeats the stream with ids
shuffled uniformly over the vocabulary (the worst case for varints). Tokens are ~50 per
second (gamma-distributed gaps, mean 20 ms). Token text: the most frequent ranks are common
English words and punctuation, the others made-up subwords of 2-9 letters, 60% with a
leading space. The live stream sends one token per frame, ids only, with the codec's
millisecond time deltas (the first frame carries an absolute time); the SSE stream carries
each token in one ``data: {...}\\n\\n`` event (id, object, created, model,
choices[0].index/delta.content/finish_reason, compact JSON), plus the opening role event,
the closing ``finish_reason: "stop"`` event and ``data: [DONE]``. Neither counts transport
framing (HTTP chunks, record length prefixes).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from edgewire.codecs.embeddings import (
    PRECISIONS,
    decode_embeddings,
    encode_embeddings,
)
from edgewire.codecs.tokens import TokenDecoder, TokenEncoder, TokenFrame
from edgewire.transport.messages import encode_tokens

__all__ = ["bench_embeddings", "bench_tokens", "synthetic_embeddings"]

_BATCH = 16
_PASSES = 3


# ------------------------------------------------------------------ embeddings


def synthetic_embeddings(n: int, dim: int, *, rng: np.random.Generator,
                         model: dict[str, Any]) -> np.ndarray[Any, Any]:
    """``n`` unit vectors from the generative model ``model`` (see the module docstring)."""
    centres = model["centres"]
    topic = rng.integers(0, centres.shape[0], size=n)
    z = centres[topic] + model["topic_spread"] * rng.standard_normal((n, centres.shape[1]))
    x = (z * model["spectrum"]) @ model["basis"].T
    x += model["noise"] * rng.standard_normal((n, dim))
    x += model["common_vec"]
    out = model["outliers"]
    x[:, out] += model["outlier_sign"] * model["outlier_scale"] * model["typical"] * (
        1.0 + 0.3 * rng.standard_normal((n, out.size)))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    unit: np.ndarray[Any, Any] = x.astype(np.float32)
    return unit


def _make_model(dim: int, rng: np.random.Generator, *, rank: int = 64, n_topics: int = 200,
                topic_spread: float = 0.7, noise: float = 0.15, common: float = 1.2,
                n_outliers: int = 4, outlier_scale: float = 6.0) -> dict[str, Any]:
    basis, _ = np.linalg.qr(rng.standard_normal((dim, rank)))
    common_vec = rng.standard_normal(dim)
    common_vec *= common / np.linalg.norm(common_vec)
    spectrum = 1.0 / np.sqrt(1.0 + np.arange(rank) / 4.0)
    # typical magnitude of one dimension (before the common direction and the outliers):
    # latent variance (1 + spread^2) spread by the spectrum over dim dimensions, plus noise
    typical = math.sqrt((1.0 + topic_spread ** 2) * float(np.sum(spectrum ** 2)) / dim
                        + noise ** 2)
    return {
        "typical": typical,
        "centres": rng.standard_normal((n_topics, rank)),
        "topic_spread": topic_spread,
        "spectrum": spectrum,
        "basis": basis,
        "noise": noise,
        "common_vec": common_vec,
        "outliers": rng.choice(dim, size=n_outliers, replace=False),
        "outlier_sign": rng.choice([-1.0, 1.0], size=n_outliers),
        "outlier_scale": outlier_scale,
    }


def _best_seconds(fn: Callable[[], object]) -> float:
    best = math.inf
    for _ in range(_PASSES):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _topk(queries: np.ndarray[Any, Any], corpus: np.ndarray[Any, Any],
          k: int) -> np.ndarray[Any, Any]:
    sims = queries @ corpus.T
    part: np.ndarray[Any, Any] = np.argpartition(-sims, k, axis=1)[:, :k]
    return part


def bench_embeddings(n_corpus: int = 10000, n_queries: int = 200, dim: int = 768,
                     seed: int = 1, *, n_outliers: int = 4,
                     outlier_scale: float = 6.0) -> dict[str, dict[str, float]]:
    """Size, fidelity, recall@10 and speed of every embedding precision (module docstring).

    ``n_outliers=0`` measures a corpus without outlier dimensions.

    Returns ``{precision: {"bytes_per_vector", "bytes_per_vector_single",
    "bytes_per_vector_uncompressed", "ratio_vs_float32", "cosine_mean", "cosine_min",
    "recall_at_10", "encode_MBps", "decode_MBps"}}``."""
    rng = np.random.default_rng(seed)
    model = _make_model(dim, rng, n_outliers=n_outliers, outlier_scale=outlier_scale)
    corpus = synthetic_embeddings(n_corpus, dim, rng=rng, model=model)
    queries = synthetic_embeddings(n_queries, dim, rng=rng, model=model)
    k = min(10, n_corpus - 1)
    truth = _topk(queries, corpus, k)
    corpus64 = corpus.astype(np.float64)
    batches = [corpus[i:i + _BATCH] for i in range(0, n_corpus, _BATCH)]
    raw_bytes = 4.0 * dim * n_corpus
    results: dict[str, dict[str, float]] = {}
    for precision in PRECISIONS:
        def encode_all(p: str = precision) -> list[bytes]:
            return [encode_embeddings(b, precision=p, timestamp=0.0, compress=True)
                    for b in batches]

        packets = encode_all()

        def decode_all(pk: list[bytes] = packets) -> list[np.ndarray[Any, Any]]:
            return [decode_embeddings(p)[0] for p in pk]

        enc_s = _best_seconds(encode_all)
        dec_s = _best_seconds(decode_all)
        decoded = np.concatenate(decode_all()).astype(np.float64)
        # cosines in float64, so that float32 rounding in the sum does not blur 1e-6 effects
        norms = np.linalg.norm(decoded, axis=1)
        cos = np.einsum("ij,ij->i", corpus64, decoded) / (
            np.linalg.norm(corpus64, axis=1) * np.maximum(norms, 1e-300))
        unit = (decoded / np.maximum(norms, 1e-300)[:, None]).astype(np.float32)
        found = _topk(queries, unit, k)
        recall = np.mean([np.intersect1d(a, b).size / k for a, b in zip(found, truth,
                                                                        strict=True)])
        per_vec = sum(len(p) for p in packets) / n_corpus
        single = [len(encode_embeddings(v, precision=precision, timestamp=0.0))
                  for v in corpus[:256]]
        plain = [len(encode_embeddings(b, precision=precision, timestamp=0.0))
                 for b in batches]
        results[precision] = {
            "bytes_per_vector": per_vec,
            "bytes_per_vector_single": float(np.mean(single)),
            "bytes_per_vector_uncompressed": sum(plain) / n_corpus,
            "ratio_vs_float32": 4.0 * dim / per_vec,
            "cosine_mean": float(cos.mean()),
            "cosine_min": float(cos.min()),
            "recall_at_10": float(recall),
            "encode_MBps": raw_bytes / enc_s / 1e6,
            "decode_MBps": raw_bytes / dec_s / 1e6,
        }
    return results


# ------------------------------------------------------------------ tokens

_COMMON = [
    " the", ",", ".", " of", " and", " to", " a", " in", " is", " that", " for", " it",
    " with", " as", " on", " was", " be", " this", " are", " by", " you", " or", " at",
    " from", " have", " not", " an", " can", " which", " we", "\n", " will", " but", " they",
    " has", " their", " more", " one", " all", " also", " if", " would", " been", " I", "'s",
    " there", " about", " when", " other", " so", " what", " do", " these", " some", " its",
    " model", " data", " time", " use", " new", " may", " how", " each", " first", ":", ")",
    " (", "\n\n", " only", " into", " than", " them", " then", " two", " any", " like", "-",
    " used", " our", " most", " over", " such", " between", " because", " through", " well",
    " where", " should", " could", " very", " example", " network", " edge", " system", "?",
    " agent", " token", " response", " question", " answer", " value", " function", "\"",
]


def _token_texts(vocab: int, rng: np.random.Generator) -> list[str]:
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    weights = np.array([12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3, 4.0, 2.8, 2.8,
                        2.4, 2.4, 2.2, 2.0, 2.0, 1.0, 1.5, 1.9, 0.8, 0.2, 0.2, 0.1, 0.1])
    weights /= weights.sum()
    texts = list(_COMMON)
    lengths = rng.integers(2, 10, size=vocab)
    spaces = rng.random(vocab) < 0.6
    for r in range(len(texts), vocab):
        word = "".join(rng.choice(list(letters), size=int(lengths[r]), p=weights))
        texts.append((" " if spaces[r] else "") + word)
    return texts


def _token_stream(n_tokens: int, vocab: int, rng: np.random.Generator) -> dict[str, Any]:
    ranks = np.arange(vocab)
    p = 1.0 / (ranks + 2.7) ** 1.07
    p /= p.sum()
    drawn = rng.choice(vocab, size=n_tokens, p=p)
    jitter = np.argsort(np.argsort(ranks * np.exp(rng.standard_normal(vocab))))
    shuffled = rng.permutation(vocab)
    gaps = rng.gamma(4.0, 0.020 / 4.0, size=n_tokens)
    times = 5000.0 + np.cumsum(gaps)
    texts = _token_texts(vocab, rng)
    return {"ranks": drawn, "ids": [int(jitter[r]) for r in drawn],
            "ids_shuffled": [int(shuffled[r]) for r in drawn],
            "texts": [texts[r] for r in drawn], "times": [float(t) for t in times]}


def _sse_bytes(texts: list[str], created: int) -> int:
    base = {"id": "chatcmpl-9xK2mQ7rT4vB8nL1pZ6wY3cD5eF0a", "object": "chat.completion.chunk",
            "created": created, "model": "gpt-4o-mini-2024-07-18"}

    def event(delta: dict[str, str], finish: str | None) -> bytes:
        chunk = dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": finish}])
        return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"

    total = len(event({"role": "assistant", "content": ""}, None))
    total += sum(len(event({"content": t}, None)) for t in texts)
    total += len(event({}, "stop")) + len(b"data: [DONE]\n\n")
    return total


def _frames(items: list[Any], times: list[float], **options: Any) -> list[bytes]:
    enc = TokenEncoder(**options)
    out: list[bytes] = []
    for item, t in zip(items, times, strict=True):
        out += [p.data for p in enc.encode(item, timestamp=t)]
    return out


def _check_round_trip(frames: list[bytes], items: list[Any]) -> None:
    dec = TokenDecoder()
    got = [f for data in frames for f in dec.decode(data, timestamp=0.0)]
    for frame, item in zip(got, items, strict=True):
        want = tuple(item.ids) if isinstance(item, TokenFrame) else tuple(item)
        if frame.ids != want:
            raise RuntimeError("token frames did not decode to what was encoded")


def bench_tokens(n_tokens: int = 1000, seed: int = 1, batch: int = 8) -> dict[str, Any]:
    """Bytes per token of token frames against OpenAI-style SSE JSON (module docstring).

    Keys: ``bytes_per_token`` (one id per frame, ms time deltas), ``sse_bytes_per_token``,
    ``ratio`` (SSE over frames), ``bytes_per_token_no_time``, ``bytes_per_token_with_text``,
    ``ratio_with_text``, ``bytes_per_token_batched`` and ``..._batched_with_text``
    (``batch`` tokens per frame), ``bytes_per_token_shuffled_ids``,
    ``record_bytes_per_token`` (a session's token record: absolute float64 time, no
    length prefix), ``mean_text_bytes``, ``id_varint_bytes`` (mean id size) and
    ``encode_tokens_per_s`` / ``decode_tokens_per_s``."""
    rng = np.random.default_rng(seed)
    s = _token_stream(n_tokens, 100_000, rng)
    ids, texts, times = s["ids"], s["texts"], s["times"]
    singles = [[i] for i in ids]
    with_text = [TokenFrame(ids=(i,), text=t) for i, t in zip(ids, texts, strict=True)]
    frames = _frames(singles, times)
    _check_round_trip(frames, singles)
    frames_text = _frames(with_text, times)
    _check_round_trip(frames_text, with_text)
    groups = range(0, n_tokens, batch)
    batched = [ids[g:g + batch] for g in groups]
    batched_text = [TokenFrame(ids=tuple(ids[g:g + batch]), text="".join(texts[g:g + batch]))
                    for g in groups]
    batch_times = [times[min(g + batch, n_tokens) - 1] for g in groups]
    frames_batched = _frames(batched, batch_times)
    _check_round_trip(frames_batched, batched)
    frames_batched_text = _frames(batched_text, batch_times)
    shuffled = _frames([[i] for i in s["ids_shuffled"]], times)
    no_time = _frames(singles, times, timestamps="none")
    records = [encode_tokens((i,), None, t) for i, t in zip(ids, times, strict=True)]
    sse = _sse_bytes(texts, created=1718000000)

    def size(fs: list[bytes]) -> float:
        return sum(len(f) for f in fs) / n_tokens

    enc_s = _best_seconds(lambda: _frames(singles, times))
    dec = TokenDecoder()
    dec_s = _best_seconds(lambda: [dec.decode(f, timestamp=0.0) for f in frames])
    per_token = size(frames)
    with_text_size = size(frames_text)
    return {
        "n_tokens": n_tokens,
        "bytes_per_token": per_token,
        "sse_bytes_per_token": sse / n_tokens,
        "ratio": sse / n_tokens / per_token,
        "bytes_per_token_no_time": size(no_time),
        "bytes_per_token_with_text": with_text_size,
        "ratio_with_text": sse / n_tokens / with_text_size,
        "batch": batch,
        "bytes_per_token_batched": size(frames_batched),
        "bytes_per_token_batched_with_text": size(frames_batched_text),
        "bytes_per_token_shuffled_ids": size(shuffled),
        "record_bytes_per_token": size(records),
        "mean_text_bytes": sum(len(t.encode()) for t in texts) / n_tokens,
        "id_varint_bytes": float(np.mean([1 + (i >= 128) + (i >= 16384) for i in ids])),
        "encode_tokens_per_s": n_tokens / enc_s,
        "decode_tokens_per_s": n_tokens / dec_s,
    }
