"""Reed-Solomon erasure code (edgewire.transport.fec): reedsolo conformance, recovery, bad input."""

from __future__ import annotations

import argparse
import itertools
import json
import random
from typing import Any

import numpy as np
import pytest
import reedsolo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgewire.cli.bench_fec import add_bench_fec_arguments, main_bench_fec
from edgewire.errors import (
    LocalProtocolError,
    MessageTooLargeError,
    RemoteProtocolError,
)
from edgewire.transport.fec import (
    GF_INV,
    GF_MUL,
    MAX_PACKET_BYTES,
    MAX_SYMBOLS,
    BytesLike,
    FecError,
    NumpyBackend,
    ReedsoloBackend,
    clear_fec_caches,
    encode_parity,
    fec_backends,
    get_fec_backend,
    parity_coefficients,
    recover,
)

BACKENDS = ["numpy", "reedsolo"]
fast = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def padded(packets: list[bytes]) -> list[bytes]:
    """Symbols as the module defines them, built independently of it."""
    size = max(len(p) for p in packets)
    return [len(p).to_bytes(2, "big") + p + bytes(size - len(p)) for p in packets]


def reference_parity(packets: list[bytes], m: int) -> list[bytes]:
    """reedsolo, column by column: the conformance contract."""
    codec = reedsolo.RSCodec(m)
    symbols = padded(packets)
    k = len(packets)
    columns = [bytes(codec.encode(bytes(s[j] for s in symbols))[k:])
               for j in range(len(symbols[0]))]
    return [bytes(col[i] for col in columns) for i in range(m)]


def group(packets: list[bytes], m: int) -> dict[int, bytes]:
    k = len(packets)
    parity = encode_parity(packets, m)
    return {**dict(enumerate(packets)), **{k + j: p for j, p in enumerate(parity)}}


def packet_lists(max_k: int, max_len: int) -> st.SearchStrategy[list[bytes]]:
    return st.lists(st.binary(max_size=max_len), min_size=1, max_size=max_k)


# --------------------------------------------------------------------------- field


def test_field_tables_match_reedsolo() -> None:
    reedsolo.init_tables()  # reedsolo's defaults: 0x11d, generator 2, c_exp 8
    for a in range(256):
        for b in range(256):
            assert GF_MUL[a, b] == reedsolo.gf_mul(a, b)
    for a in range(1, 256):
        assert GF_MUL[a, GF_INV[a]] == 1
    assert not GF_MUL.flags.writeable


@pytest.mark.parametrize(("k", "m"), [(1, 1), (3, 2), (10, 4), (1, 254), (254, 1), (100, 30)])
def test_coefficients_are_unit_vector_encodings(k: int, m: int) -> None:
    codec = reedsolo.RSCodec(m)
    coef = parity_coefficients(k, m)
    assert coef.shape == (k, m)
    for i in range(k):
        unit = bytearray(k)
        unit[i] = 1
        assert bytes(coef[i]) == bytes(codec.encode(bytes(unit))[k:])


# ---------------------------------------------------------------------- conformance


@settings(fast, max_examples=60)
@given(packets=packet_lists(12, 300), m=st.integers(1, 8))
def test_parity_is_reedsolo_columnwise(packets: list[bytes], m: int) -> None:
    parity = encode_parity(packets, m)
    assert parity == reference_parity(packets, m)
    assert all(len(p) == 2 + max(map(len, packets)) for p in parity)
    assert encode_parity(packets, m, backend="reedsolo") == parity


@pytest.mark.parametrize(("k", "m", "size"), [(200, 30, 20), (254, 1, 20), (1, 254, 20),
                                              (30, 10, 64)])
def test_large_groups_match_reedsolo(k: int, m: int, size: int) -> None:
    # (200, 30) and (254, 1) exceed the cached-table budget: the row-by-row path
    rng = random.Random(k * 1000 + m)
    packets = [rng.randbytes(rng.randint(0, size)) for _ in range(k)]
    parity = encode_parity(packets, m)
    assert parity == encode_parity(packets, m, backend="reedsolo")
    everything = {**dict(enumerate(packets)), **{k + j: p for j, p in enumerate(parity)}}
    for _ in range(3):
        keep = rng.sample(range(k + m), k)
        received = {i: everything[i] for i in keep}
        assert recover(k, m, received) == packets
    keep = rng.sample(range(k + m), k)
    assert recover(k, m, {i: everything[i] for i in keep}, backend="reedsolo") == packets


def test_backends_agree_on_arrays() -> None:
    rng = np.random.default_rng(5)
    data = rng.integers(0, 256, size=(7, 50), dtype=np.uint8)
    parity = NumpyBackend().encode(data, 5)
    assert np.array_equal(parity, ReedsoloBackend().encode(data, 5))
    rows = np.concatenate([data, parity])
    indices = [1, 3, 5, 7, 8, 10, 11]
    for backend in (NumpyBackend(), ReedsoloBackend()):
        missing = backend.decode(7, 5, indices, np.ascontiguousarray(rows[indices]))
        assert np.array_equal(missing, data[[0, 2, 4, 6]])


def test_backend_registry() -> None:
    assert fec_backends() == ["numpy", "reedsolo"]
    assert isinstance(get_fec_backend("numpy"), NumpyBackend)
    with pytest.raises(LocalProtocolError, match="unknown FEC backend"):
        encode_parity([b"x"], 1, backend="nope")
    with pytest.raises(LocalProtocolError):
        recover(1, 1, {0: b"x"}, backend="nope")


# ------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("k", "m"), [(k, m) for k in range(1, 5) for m in range(1, 4)])
def test_every_erasure_pattern_of_small_groups(k: int, m: int, backend: str) -> None:
    rng = random.Random(k * 10 + m)
    # unequal lengths, an empty packet among them
    packets = [rng.randbytes(rng.randint(0, 12)) for _ in range(k - 1)] + [b""]
    rng.shuffle(packets)
    everything = group(packets, m)
    for count in range(k + m + 1):
        for keep in itertools.combinations(range(k + m), count):
            received = {i: everything[i] for i in keep}
            if count < k:
                with pytest.raises(FecError, match="needed"):
                    recover(k, m, received, backend=backend)
            else:
                assert recover(k, m, received, backend=backend) == packets


@settings(fast, max_examples=40)
@given(data=st.data(), k=st.integers(1, 30), m=st.integers(1, 10))
def test_random_erasures_backends_agree(data: st.DataObject, k: int, m: int) -> None:
    packets = data.draw(st.lists(st.binary(max_size=24), min_size=k, max_size=k))
    everything = group(packets, m)
    keep = data.draw(st.lists(st.integers(0, k + m - 1), min_size=k, max_size=k + m,
                              unique=True))
    received = {i: everything[i] for i in keep}
    assert recover(k, m, received) == packets
    assert recover(k, m, received, backend="reedsolo") == packets


def test_warm_and_cold_caches_agree() -> None:
    packets = [bytes([i]) * (100 + i) for i in range(10)]
    received = {i: p for i, p in group(packets, 4).items() if i not in (0, 2, 4, 6)}
    first = recover(10, 4, received)
    assert recover(10, 4, received) == first == packets
    clear_fec_caches()
    assert recover(10, 4, received) == packets


def test_bytes_like_inputs() -> None:
    packets = [b"alpha", b"be", b""]
    parity = encode_parity([bytearray(packets[0]), memoryview(packets[1]), packets[2]], 2)
    assert parity == encode_parity(packets, 2)
    received: dict[int, BytesLike] = {1: bytearray(packets[1]), 3: memoryview(parity[0]),
                                      4: parity[1]}
    assert recover(3, 2, received) == packets
    assert all(type(p) is bytes for p in recover(3, 2, received))


def test_numpy_integer_parameters() -> None:
    packets = [b"ab", b"cde"]
    everything = group(packets, 2)
    received = {np.int64(i): everything[i] for i in (1, 2)}
    assert recover(np.int64(2), np.int32(2), received) == packets  # type: ignore[arg-type]


# ------------------------------------------------------------------------ bad input


def test_fec_error_is_a_remote_error() -> None:
    assert issubclass(FecError, RemoteProtocolError)
    assert FecError("x").error_code == 0


@pytest.mark.parametrize(("k", "m"), [(0, 1), (1, 0), (-1, 3), (3, -1), (200, 56), (255, 1),
                                      (1, 255), (1.0, 1), (1, "2"), (True, 1), (None, 1)])
def test_impossible_groups(k: Any, m: Any) -> None:
    with pytest.raises(FecError, match="FEC group"):
        recover(k, m, {0: b"x"})
    packets = [b"x"] * k if isinstance(k, int) and not isinstance(k, bool) and k > 0 else []
    with pytest.raises(LocalProtocolError):
        encode_parity(packets, m)


def test_largest_groups_work() -> None:
    assert recover(1, MAX_SYMBOLS - 1, {5: encode_parity([b"q"], 254)[4]}) == [b"q"]
    packets = [bytes([i]) for i in range(254)]
    received = {**dict(enumerate(packets)), 254: encode_parity(packets, 1)[0]}
    del received[100]
    assert recover(254, 1, received) == packets


def test_bad_received_symbols() -> None:
    packets = [b"one", b"three", b"x"]
    everything = group(packets, 2)  # parity symbols are 7 bytes
    cases: list[tuple[Any, str]] = [
        ({0: b"one", 3: everything[3]}, "needed"),
        ({0: b"one", 3: everything[3], 4: everything[4][:-1]}, "differ in length"),
        ({0: b"one", 3: everything[3][:1], 4: everything[4][:1]}, "impossible"),
        ({0: b"one", 3: b"", 4: b""}, "impossible"),
        ({0: b"one!!!", 3: everything[3], 4: everything[4]}, "longer than"),
        ({0: b"one", 1: b"three", 2: b"x", 3: everything[3][:4]}, "longer than"),
        ({0: b"one", 5: everything[3], 4: everything[4]}, "outside"),
        ({-1: b"one", 3: everything[3], 4: everything[4]}, "outside"),
        ({"0": b"one", 3: everything[3], 4: everything[4]}, "not an integer"),
        ({0.0: b"one", 3: everything[3], 4: everything[4]}, "not an integer"),
        ({0: "one", 3: everything[3], 4: everything[4]}, "not bytes"),
        ({0: None, 3: everything[3], 4: everything[4]}, "not bytes"),
        ([b"one", b"three", b"x"], "mapping"),
    ]
    for received, message in cases:
        for backend in BACKENDS:
            with pytest.raises(FecError, match=message):
                recover(3, 2, received, backend=backend)


def test_duplicate_index_is_rejected() -> None:
    class Twice(dict[int, bytes]):
        def items(self) -> Any:
            return [(0, b"a"), (0, b"a")]

    with pytest.raises(FecError, match="twice"):
        recover(2, 1, Twice())


def test_source_packet_too_long_without_parity() -> None:
    with pytest.raises(FecError, match="longer than"):
        recover(1, 1, {0: bytes(MAX_PACKET_BYTES + 1)})
    assert recover(1, 1, {0: bytes(MAX_PACKET_BYTES)}) == [bytes(MAX_PACKET_BYTES)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_corrupt_length_prefix(backend: str) -> None:
    # symbols whose prefix claims more bytes than the symbol holds, encoded like a sender
    rows = np.zeros((3, 6), dtype=np.uint8)
    rows[:, :2] = 0xFF
    rows[:, 2:] = 7
    parity = NumpyBackend().encode(rows, 2)
    received = {0: b"abcd", 3: parity[0].tobytes(), 4: parity[1].tobytes()}
    with pytest.raises(FecError, match="corrupt length prefix"):
        recover(3, 2, received, backend=backend)
    # k = 1, m = 1: the parity symbol equals the source symbol
    with pytest.raises(FecError, match="corrupt length prefix"):
        recover(1, 1, {1: b"\x00\x04abc"}, backend=backend)
    assert recover(1, 1, {1: b"\x00\x03abc"}, backend=backend) == [b"abc"]


def test_encode_misuse() -> None:
    with pytest.raises(MessageTooLargeError):
        encode_parity([b"", bytes(MAX_PACKET_BYTES + 1)], 1)
    assert len(encode_parity([bytes(MAX_PACKET_BYTES)], 1)[0]) == MAX_PACKET_BYTES + 2
    with pytest.raises(LocalProtocolError, match="must be bytes"):
        encode_parity([b"a", "b"], 1)  # type: ignore[list-item]
    with pytest.raises(LocalProtocolError, match="sequence"):
        encode_parity(iter([b"a"]), 1)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        parity_coefficients(0, 1)


symbols_or_junk = st.one_of(st.binary(max_size=40), st.none(), st.text(max_size=3),
                            st.integers())


@settings(fast, max_examples=300)
@given(k=st.integers(-2, 12), m=st.integers(-2, 12),
       received=st.dictionaries(st.one_of(st.integers(-3, 30), st.text(max_size=2)),
                                symbols_or_junk, max_size=16),
       backend=st.sampled_from(BACKENDS))
def test_fuzz_recover_raises_only_fec_error(k: int, m: int, received: dict[Any, Any],
                                            backend: str) -> None:
    try:
        out = recover(k, m, received, backend=backend)
    except FecError:
        return
    assert len(out) == k
    assert all(type(p) is bytes for p in out)


@settings(fast, max_examples=150)
@given(data=st.data(), packets=packet_lists(6, 30), m=st.integers(1, 4),
       backend=st.sampled_from(BACKENDS))
def test_fuzz_damaged_groups(data: st.DataObject, packets: list[bytes], m: int,
                             backend: str) -> None:
    k = len(packets)
    everything = group(packets, m)
    keep = data.draw(st.lists(st.integers(0, k + m - 1), min_size=1, max_size=k + m,
                              unique=True))
    received = {i: everything[i] for i in keep}
    for i in keep:
        if data.draw(st.booleans()):
            received[i] = data.draw(st.binary(max_size=40))
    try:
        out = recover(k, m, received, backend=backend)
    except FecError:
        return
    assert len(out) == k


# -------------------------------------------------------------------------- bench


def bench_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_bench_fec_arguments(parser)
    return parser.parse_args(list(argv))


def test_bench_json(capsys: pytest.CaptureFixture[str]) -> None:
    messages: list[str] = []
    args = bench_args("--seconds", "0.05", "--size", "300", "--json")
    assert main_bench_fec(args, progress=messages.append) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params"] == {"k": 10, "m": 4, "size": 300}
    for name in ("edgewire", "reedsolo"):
        assert {"encode_MBps", "decode_MBps"} <= set(out[name])
        assert all(v > 0 for v in out[name].values())
    assert out["edgewire"]["decode_cold_MBps"] > 0
    assert set(out["ratio_vs_reedsolo"]) == {"encode", "decode"}
    if out["zfec"] is None:
        assert out["ratio_vs_zfec"] is None
    else:
        assert set(out["zfec"]) == {"encode_MBps", "decode_MBps"}
        assert set(out["ratio_vs_zfec"]) == {"encode", "decode"}
    assert messages


def test_bench_table_and_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_bench_fec(bench_args("--seconds", "0.02", "--k", "3", "--m", "5",
                                     "--size", "40")) == 0
    assert "edgewire / reedsolo" in capsys.readouterr().out
    assert main_bench_fec(bench_args("--k", "250", "--m", "6")) == 2
    assert main_bench_fec(bench_args("--size", "0")) == 2
    assert "bench fec" in capsys.readouterr().err
