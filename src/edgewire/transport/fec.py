"""Packet-level Reed-Solomon erasure code (sans-I/O, pure functions).

The code is exactly the one the ``reedsolo`` package computes with its defaults (GF(2^8),
primitive polynomial 0x11d, generator 2, first consecutive root 0): for a group of ``k``
source symbols and ``m`` parity symbols of equal length, byte column ``j`` of the parity
symbols equals ``reedsolo.RSCodec(m).encode(column)[k:]``, where ``column`` is byte ``j`` of
each source symbol in order. Symbol indices follow the codeword: ``0 .. k-1`` are the source
symbols, ``k .. k+m-1`` the parity symbols. Any ``k`` of the ``k + m`` symbols recover the group
(the code is MDS).

Packets of unequal length become symbols of ``2 + max(len)`` bytes: a 2-byte big-endian length,
the packet, zero padding. :func:`encode_parity` returns the parity symbols of a group and
:func:`recover` rebuilds the source packets from any ``k`` received symbols.

This is an erasure code only: it repairs symbols known to be missing and does not detect
corrupted ones (QUIC's packet protection already drops those). A length prefix that cannot fit
its symbol is the one corruption it notices.

Backends (ABC plus registry): ``"numpy"`` (the default, vectorized table lookups) and
``"reedsolo"`` (the reference implementation column by column; slow, needs the ``fec`` extra).
Errors follow edgewire's split: misusing :func:`encode_parity` raises
:class:`~edgewire.errors.LocalProtocolError`; a group :func:`recover` cannot decode raises
:class:`FecError`, a :class:`~edgewire.errors.RemoteProtocolError`.
"""

from __future__ import annotations

import abc
import functools
import operator
from collections.abc import Mapping, Sequence
from typing import Any, SupportsIndex, cast

import numpy as np
import numpy.typing as npt

from edgewire.errors import LocalProtocolError, MessageTooLargeError, RemoteProtocolError

__all__ = [
    "GF_EXP",
    "GF_GENERATOR",
    "GF_INV",
    "GF_LOG",
    "GF_MUL",
    "GF_PRIMITIVE",
    "MAX_PACKET_BYTES",
    "MAX_SYMBOLS",
    "PREFIX_BYTES",
    "BytesLike",
    "FecBackend",
    "FecError",
    "NumpyBackend",
    "ReedsoloBackend",
    "clear_fec_caches",
    "encode_parity",
    "fec_backends",
    "get_fec_backend",
    "parity_coefficients",
    "recover",
    "register_fec_backend",
]

U8Array = npt.NDArray[np.uint8]
#: What the packet API accepts as a packet or symbol (it returns ``bytes``).
BytesLike = bytes | bytearray | memoryview

#: Largest group: source plus parity symbols (the length of a GF(2^8) Reed-Solomon codeword).
MAX_SYMBOLS = 255
#: Largest source packet in bytes (its length must fit the 2-byte prefix).
MAX_PACKET_BYTES = 65535
#: Bytes of the big-endian length prefix in front of every source packet inside a symbol.
PREFIX_BYTES = 2
#: Primitive polynomial of GF(2^8) (reedsolo's default).
GF_PRIMITIVE = 0x11D
#: Generator of the multiplicative group (reedsolo's default; first consecutive root is 0).
GF_GENERATOR = 2

# Cached lookup tables of the numpy backend above this size are not kept: the linear map is
# then applied one input row at a time, building each row's table on the fly.
_TABLE_LIMIT_BYTES = 128 * 1024
_ENCODER_CACHE = 64
_DECODER_CACHE = 128


class FecError(RemoteProtocolError):
    """An FEC group cannot be recovered from what was received.

    Too few symbols, inconsistent lengths, impossible group parameters, indices out of range or
    a corrupt length prefix. Like every remote error it is meant to be counted and the group
    dropped; ``error_code`` is 0 because a bad group alone does not close the connection.
    """


# ----------------------------------------------------------------------------- GF(2^8)


def _build_tables() -> tuple[U8Array, npt.NDArray[np.int16], U8Array, U8Array]:
    exp = np.zeros(510, dtype=np.uint8)
    log = np.zeros(256, dtype=np.int16)
    x = 1
    for i in range(255):
        exp[i] = x
        log[x] = i
        x <<= 1  # multiplying by the generator 2
        if x & 0x100:
            x ^= GF_PRIMITIVE
    # doubled so that exp[log[a] + log[b]] needs no modulo
    exp[255:] = exp[:255]
    a = np.arange(256)
    prod = exp[log[:, None].astype(np.intp) + log[None, :]]
    mul = np.where((a[:, None] == 0) | (a[None, :] == 0), 0, prod).astype(np.uint8)
    inv = np.zeros(256, dtype=np.uint8)
    inv[1:] = exp[255 - log[1:].astype(np.intp)]
    for t in (exp, log, mul, inv):
        t.flags.writeable = False
    return exp, log, mul, inv


_EXP, _LOG, _MUL, _INV = _build_tables()
#: GF(2^8) antilog table: ``GF_EXP[i] = 2**i`` (510 entries, so indices need no modulo).
GF_EXP = _EXP
#: GF(2^8) log table: ``GF_LOG[x]`` for ``x >= 1`` (``GF_LOG[0]`` is meaningless).
GF_LOG = _LOG
#: GF(2^8) multiplication table, 256 x 256 uint8: ``GF_MUL[a, b] = a * b``.
GF_MUL = _MUL
#: GF(2^8) inverses: ``GF_INV[a] * a == 1`` for ``a >= 1`` (``GF_INV[0]`` is 0).
GF_INV = _INV


def _as_int(value: object) -> int | None:
    if type(value) is int:
        return value
    if isinstance(value, bool) or not isinstance(value, SupportsIndex):
        return None
    return operator.index(value)


def _check_group(k: object, m: object, error: type[Exception]) -> tuple[int, int]:
    k_int, m_int = _as_int(k), _as_int(m)
    if k_int is None or m_int is None:
        raise error(f"FEC group parameters must be integers, got k={k!r}, m={m!r}")
    if k_int < 1 or m_int < 1 or k_int + m_int > MAX_SYMBOLS:
        raise error(f"impossible FEC group k={k_int}, m={m_int} (need k >= 1, m >= 1, "
                    f"k + m <= {MAX_SYMBOLS})")
    return k_int, m_int


@functools.lru_cache(maxsize=_ENCODER_CACHE)
def _parity_coefficients(k: int, m: int) -> U8Array:
    # Systematic encoding appends msg(x) * x^m mod g(x), g(x) = prod_{i<m} (x - 2^i), with the
    # coefficients highest degree first. Source byte i multiplies x^(m + k-1-i), so its row of
    # coefficients is x^(m + k-1-i) mod g(x); those remainders follow from x^m mod g(x) by
    # repeated multiplication by x, the way a shift register computes them.
    exp: list[int] = GF_EXP.tolist()
    log: list[int] = GF_LOG.tolist()

    def mul(a: int, b: int) -> int:
        return exp[log[a] + log[b]] if a and b else 0

    g = [1]
    for i in range(m):
        root = exp[i]
        g = [a ^ mul(root, b) for a, b in zip([*g, 0], [0, *g], strict=True)]
    # g is monic, highest degree first: g[1:] are the coefficients of x^(m-1) .. x^0
    low = g[1:]
    rem = list(low)  # x^m mod g(x), highest degree first
    rows = [rem]
    for _ in range(k - 1):
        top = rem[0]
        shifted = [*rem[1:], 0]
        rem = [s ^ mul(top, c) for s, c in zip(shifted, low, strict=True)]
        rows.append(rem)
    coef = np.array(rows[::-1], dtype=np.uint8).reshape(k, m)
    coef.flags.writeable = False
    return coef


def parity_coefficients(k: int, m: int) -> U8Array:
    """The k x m matrix ``C`` of the systematic code (read-only, cached).

    Parity symbol ``j`` is the GF(2^8) sum over ``i`` of ``C[i, j] * source[i]``, so the
    generator matrix is ``[I | C]``. Raises :class:`~edgewire.errors.LocalProtocolError` for
    impossible ``k``/``m``.
    """
    return _parity_coefficients(*_check_group(k, m, LocalProtocolError))


def _gf_invert(a: U8Array) -> U8Array:
    # Gauss-Jordan elimination over GF(2^8) on [A | I], whole rows at a time.
    n = a.shape[0]
    aug = np.concatenate([a, np.eye(n, dtype=np.uint8)], axis=1)
    for col in range(n):
        nonzero = np.flatnonzero(aug[col:, col])
        if nonzero.size == 0:
            # cannot happen for an MDS code: every square submatrix of C is nonsingular
            raise FecError("singular FEC decoding matrix")
        pivot = col + int(nonzero[0])
        if pivot != col:
            aug[[col, pivot]] = aug[[pivot, col]]
        aug[col] = GF_MUL[GF_INV[aug[col, col]]][aug[col]]
        factors = aug[:, col].copy()
        factors[col] = 0
        aug ^= GF_MUL[factors[:, None], aug[col][None, :]]
    return aug[:, n:].copy()


def _gf_matmul(a: U8Array, b: U8Array) -> U8Array:
    product: U8Array = np.bitwise_xor.reduce(GF_MUL[a[:, :, None], b[None, :, :]], axis=1)
    return product


# ----------------------------------------------------------------------- linear maps


class _LinearMap:
    """``out[j] = sum_i coef[i, j] * data[i]`` over GF(2^8), for symbol rows ``data``.

    Each input row gets a lookup table from a byte value to the products with all of its
    output coefficients, packed into one machine word (up to 8 outputs per word, the
    narrowest word that holds them). One gather over all input bytes plus an XOR reduction
    over the input rows then yields every output byte.
    """

    __slots__ = ("_coef", "_dtype", "_n_in", "_n_out", "_offsets", "_table", "_width")

    def __init__(self, coef: U8Array) -> None:
        self._coef = coef
        self._n_in, self._n_out = coef.shape
        self._dtype: type[np.unsignedinteger[Any]]
        if self._n_out > 4:
            self._dtype, self._width = np.uint64, -(-self._n_out // 8) * 8
        else:
            self._dtype = (np.uint8, np.uint16, np.uint32, np.uint32)[self._n_out - 1]
            self._width = np.dtype(self._dtype).itemsize
        # n_in <= 255, so row offset plus byte value always fits 16 bits
        self._offsets = (np.arange(self._n_in, dtype=np.uint16) * 256)[:, None]
        self._table: npt.NDArray[np.unsignedinteger[Any]] | None = None
        if self._n_in * 256 * self._width <= _TABLE_LIMIT_BYTES:
            self._table = self._pack(coef).reshape(self._n_in * 256, -1)
            if self._table.shape[1] == 1:
                self._table = self._table.reshape(-1)
            self._table.flags.writeable = False

    def _pack(self, coef: U8Array) -> npt.NDArray[np.unsignedinteger[Any]]:
        # (rows, 256, width) bytes viewed as native words; apply() views the words back as
        # bytes, so byte order does not matter
        packed = np.zeros((coef.shape[0], 256, self._width), dtype=np.uint8)
        packed[:, :, : self._n_out] = GF_MUL[coef].transpose(0, 2, 1)
        return packed.view(self._dtype)

    def apply(self, data: U8Array) -> U8Array:
        """Map ``data`` (n_in x size) to the (n_out x size) output rows."""
        size = data.shape[1]
        acc: npt.NDArray[np.unsignedinteger[Any]]
        # indices are in range by construction: mode="wrap" skips numpy's bounds errors
        if self._table is not None:
            idx = data.astype(np.uint16)
            idx += self._offsets
            gathered = self._table.take(idx, axis=0, mode="wrap")
            acc = np.bitwise_xor.reduce(gathered, axis=0)
        else:
            acc = np.zeros((size, self._width // np.dtype(self._dtype).itemsize),
                           dtype=self._dtype)
            for i in range(self._n_in):
                row = self._pack(self._coef[i : i + 1])[0]
                acc ^= row.take(data[i], axis=0, mode="wrap")
        out = acc.view(np.uint8).reshape(size, self._width)
        if self._n_out == 1:
            return out.reshape(1, size)
        return np.ascontiguousarray(out[:, : self._n_out].T)


@functools.lru_cache(maxsize=_ENCODER_CACHE)
def _encoder(k: int, m: int) -> _LinearMap:
    return _LinearMap(_parity_coefficients(k, m))


@functools.lru_cache(maxsize=_DECODER_CACHE)
def _decoder(k: int, m: int, indices: tuple[int, ...]) -> _LinearMap:
    # The received symbols are G_S^T d for the k x k submatrix G_S of [I | C] at ``indices``;
    # only the rows of its inverse for the missing sources E are needed. Received sources R
    # are identity rows, so block elimination leaves the |E| x |E| block M = C[E, Q] of the
    # parity rows used Q: parity_Q = C[R, Q]^T d_R + M^T d_E, hence
    # d_E = N^T (parity_Q + C[R, Q]^T d_R) with N = M^-1. M is nonsingular because every
    # square submatrix of C is (the code is MDS). Inverting |E| x |E| instead of k x k keeps
    # the first decoding of an erasure pattern cheap for large groups.
    coef = _parity_coefficients(k, m)
    received = [i for i in indices if i < k]
    used = [i - k for i in indices if i >= k]
    missing = sorted(set(range(k)).difference(received))
    n = _gf_invert(np.ascontiguousarray(coef[np.ix_(missing, used)]))
    from_sources = _gf_matmul(coef[np.ix_(received, used)], n)
    # rows in the order of ``indices``: received sources first, then the parity used
    return _LinearMap(np.ascontiguousarray(np.concatenate([from_sources, n])))


def clear_fec_caches() -> None:
    """Drop the cached coefficient matrices, inverses and lookup tables (benchmarks, tests)."""
    _parity_coefficients.cache_clear()
    _encoder.cache_clear()
    _decoder.cache_clear()


# --------------------------------------------------------------------------- backends


class FecBackend(abc.ABC):
    """How a group's symbols are computed: equal-length uint8 rows in, rows out.

    Callers validate: ``k``/``m`` are possible, ``data`` and ``symbols`` are C-contiguous 2-D
    uint8 arrays, ``indices`` are ``k`` distinct sorted indices below ``k + m``.
    """

    @abc.abstractmethod
    def encode(self, data: U8Array, m: int) -> U8Array:
        """The ``(m, size)`` parity rows of the ``(k, size)`` source rows ``data``."""

    @abc.abstractmethod
    def decode(self, k: int, m: int, indices: Sequence[int], symbols: U8Array) -> U8Array:
        """The missing source rows, in increasing index order, shape ``(missing, size)``.

        ``symbols`` holds the ``k`` received rows whose indices are ``indices``.
        """


class NumpyBackend(FecBackend):
    """Vectorized table lookups; matrices and inverses cached per group shape (bounded LRU).

    Decoding needs the rows of the inverse of the k x k submatrix of ``[I | C]`` at the
    received indices that belong to missing sources; block elimination reduces that to a
    Gauss-Jordan inversion in GF(2^8) of one missing x missing block of ``C``, once per erasure
    pattern.
    """

    def encode(self, data: U8Array, m: int) -> U8Array:
        """See :meth:`FecBackend.encode`."""
        return _encoder(data.shape[0], m).apply(data)

    def decode(self, k: int, m: int, indices: Sequence[int], symbols: U8Array) -> U8Array:
        """See :meth:`FecBackend.decode`."""
        key = tuple(indices)
        if key[-1] < k:
            return np.zeros((0, symbols.shape[1]), dtype=np.uint8)
        return _decoder(k, m, key).apply(symbols)


@functools.lru_cache(maxsize=16)
def _reedsolo_codec(m: int) -> Any:
    try:
        import reedsolo
    except ImportError:  # pragma: no cover - depends on the environment
        raise LocalProtocolError(
            "the reedsolo FEC backend needs reedsolo: pip install 'edgewire[fec]'"
        ) from None
    return reedsolo.RSCodec(m)


class ReedsoloBackend(FecBackend):
    """The ``reedsolo`` package, one byte column at a time (the reference; slow)."""

    def encode(self, data: U8Array, m: int) -> U8Array:
        """See :meth:`FecBackend.encode`."""
        k = data.shape[0]
        codec = _reedsolo_codec(m)
        columns = np.ascontiguousarray(data.T)
        out = np.empty((columns.shape[0], m), dtype=np.uint8)
        for j, column in enumerate(columns):
            out[j] = np.frombuffer(bytes(codec.encode(column.tobytes())[k:]), dtype=np.uint8)
        return np.ascontiguousarray(out.T)

    def decode(self, k: int, m: int, indices: Sequence[int], symbols: U8Array) -> U8Array:
        """See :meth:`FecBackend.decode`."""
        import reedsolo

        missing = sorted(set(range(k)).difference(indices))
        if not missing:
            return np.zeros((0, symbols.shape[1]), dtype=np.uint8)
        codec = _reedsolo_codec(m)
        erased = sorted(set(range(k + m)).difference(indices))
        codewords = np.zeros((symbols.shape[1], k + m), dtype=np.uint8)
        codewords[:, list(indices)] = symbols.T
        out = np.empty((symbols.shape[1], len(missing)), dtype=np.uint8)
        for j, word in enumerate(codewords):
            try:
                message = codec.decode(word.tobytes(), erase_pos=erased, only_erasures=True)[0]
            except reedsolo.ReedSolomonError as exc:
                raise FecError(f"reedsolo could not decode the group: {exc}") from None
            out[j] = np.frombuffer(bytes(message), dtype=np.uint8)[missing]
        return np.ascontiguousarray(out.T)


_BACKENDS: dict[str, FecBackend] = {}


def register_fec_backend(name: str, backend: FecBackend) -> None:
    """Make ``backend`` selectable as ``backend=name`` (replaces an earlier one of that name)."""
    _BACKENDS[name] = backend


def get_fec_backend(name: str) -> FecBackend:
    """The backend registered as ``name``; :class:`LocalProtocolError` if there is none."""
    try:
        return _BACKENDS[name]
    except (KeyError, TypeError):
        raise LocalProtocolError(
            f"unknown FEC backend {name!r} (known: {', '.join(sorted(_BACKENDS))})"
        ) from None


def fec_backends() -> list[str]:
    """Names of the registered backends."""
    return sorted(_BACKENDS)


register_fec_backend("numpy", NumpyBackend())
register_fec_backend("reedsolo", ReedsoloBackend())


# ------------------------------------------------------------------------ packet API


def _stack(packets: Sequence[bytes], stride: int) -> bytearray:
    # source symbols back to back: length prefix, packet, zero padding up to the stride
    buf = bytearray(len(packets) * stride)
    offset = 0
    for p in packets:
        n = len(p)
        buf[offset] = n >> 8
        buf[offset + 1] = n & 0xFF
        buf[offset + PREFIX_BYTES : offset + PREFIX_BYTES + n] = p
        offset += stride
    return buf


def _local_bytes(value: object) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, memoryview):
        return value.tobytes()
    raise LocalProtocolError(f"FEC source packets must be bytes, not {type(value).__name__}")


def encode_parity(packets: Sequence[BytesLike], m: int, *, backend: str = "numpy") -> list[bytes]:
    """The ``m`` parity symbols of the group of source ``packets`` (k = ``len(packets)``).

    Each parity symbol is ``2 + max(len(p) for p in packets)`` bytes. Raises
    :class:`~edgewire.errors.LocalProtocolError` for an impossible group or a packet that is
    not bytes-like, and :class:`~edgewire.errors.MessageTooLargeError` for a packet over
    :data:`MAX_PACKET_BYTES`.
    """
    impl = get_fec_backend(backend)
    if not isinstance(packets, Sequence):
        raise LocalProtocolError("FEC source packets must be a sequence of bytes")
    k, m = _check_group(len(packets), m, LocalProtocolError)
    # memoryviews of wider items would not copy byte for byte: everything becomes bytes
    plain = cast("list[bytes]", packets) if all(type(p) is bytes for p in packets) else [
        _local_bytes(p) for p in packets]
    size = max(map(len, plain))
    if size > MAX_PACKET_BYTES:
        raise MessageTooLargeError(
            f"FEC source packet of {size} bytes exceeds {MAX_PACKET_BYTES}")
    stride = PREFIX_BYTES + size
    data = np.frombuffer(_stack(plain, stride), dtype=np.uint8).reshape(k, stride)
    return [row.tobytes() for row in impl.encode(data, m)]


def _remote_bytes(value: object, index: int) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, memoryview):
        return value.tobytes()
    raise FecError(f"FEC symbol {index} is {type(value).__name__}, not bytes")


def recover(k: int, m: int, received: Mapping[int, BytesLike], *,
            backend: str = "numpy") -> list[bytes]:
    """The ``k`` source packets of a group, from any ``k`` of its ``k + m`` symbols.

    ``received`` maps a symbol index to its bytes: for ``index < k`` the source packet as sent
    (no prefix, no padding), for ``k <= index < k + m`` a parity symbol from
    :func:`encode_parity`. With more than ``k`` symbols, the source packets and the
    lowest-numbered parity symbols are used; when no source packet is missing nothing is
    computed. Every symbol is still checked. Raises :class:`FecError` when the group cannot be
    recovered (see the class) and :class:`~edgewire.errors.LocalProtocolError` for an unknown
    ``backend``.
    """
    impl = get_fec_backend(backend)
    k, m = _check_group(k, m, FecError)
    if not isinstance(received, Mapping):
        raise FecError("received FEC symbols must be a mapping of index to bytes")
    n = k + m
    sources: dict[int, bytes] = {}
    parity: dict[int, bytes] = {}
    count = 0
    for key, value in received.items():
        index = key if type(key) is int else _as_int(key)
        if index is None:
            raise FecError(f"FEC symbol index {key!r} is not an integer")
        if not 0 <= index < n:
            raise FecError(f"FEC symbol index {index} is outside 0..{n - 1}")
        symbol = value if type(value) is bytes else _remote_bytes(value, index)
        if index < k:
            sources[index] = symbol
        else:
            parity[index] = symbol
        count += 1
    if len(sources) + len(parity) != count:
        raise FecError("an FEC symbol index appears twice")
    if count < k:
        raise FecError(f"{count} FEC symbols received, {k} needed")

    limit = MAX_PACKET_BYTES
    stride = 0
    if parity:
        lengths = set(map(len, parity.values()))
        stride = lengths.pop()
        if lengths:
            raise FecError("FEC parity symbols of one group differ in length")
        if not PREFIX_BYTES <= stride <= PREFIX_BYTES + MAX_PACKET_BYTES:
            raise FecError(f"FEC parity symbols of {stride} bytes are impossible")
        limit = stride - PREFIX_BYTES
    if sources and max(map(len, sources.values())) > limit:
        raise FecError(f"an FEC source packet is longer than the group allows ({limit} bytes)")

    if len(sources) == k:
        return [sources[i] for i in range(k)]

    # every source received plus the lowest parity indices: k symbols in increasing order
    used_sources = sorted(sources)
    used_parity = sorted(parity)[: k - len(sources)]
    buf = _stack([sources[i] for i in used_sources], stride)
    buf += b"".join([parity[i] for i in used_parity])
    symbols = np.frombuffer(buf, dtype=np.uint8).reshape(k, stride)
    rebuilt = impl.decode(k, m, used_sources + used_parity, symbols)

    out = [sources.get(i, b"") for i in range(k)]
    missing = [i for i in range(k) if i not in sources]
    for i, row in zip(missing, rebuilt, strict=True):
        symbol = row.tobytes()
        length = (symbol[0] << 8) | symbol[1]
        if length > limit:
            raise FecError(f"recovered FEC source packet {i} has a corrupt length prefix "
                           f"({length} > {limit})")
        out[i] = symbol[PREFIX_BYTES : PREFIX_BYTES + length]
    return out
