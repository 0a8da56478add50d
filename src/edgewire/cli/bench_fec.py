"""``edgewire bench fec``: Reed-Solomon erasure coding speed against two baselines.

Three contenders, measured in the same run on the same group (``k`` source packets of
``size`` bytes, ``m`` parity symbols):

* edgewire: :func:`~edgewire.transport.fec.encode_parity` and
  :func:`~edgewire.transport.fec.recover` (numpy backend), including the length prefixes,
  padding and the conversion to and from ``bytes``;
* reedsolo: the same code in pure Python, one byte column at a time
  (``RSCodec(m).encode(column)`` and ``RSCodec(m).decode(column, erase_pos=...,
  only_erasures=True)``). Columns are prebuilt, so its figure leaves out the transposition;
  it is so slow that it is timed on as many columns as fit in the time budget (cycling
  through the ``size`` columns) and scaled, each column carrying ``k`` payload bytes;
* zfec (a C library, if installed): ``Encoder(k, k + m)`` and ``Decoder(k, k + m)`` on
  ``size``-byte blocks (no length prefix: its blocks must be equal).

Throughput is source payload bytes (``k * size`` per group) per second / 1e6. Decoding loses
the worst case: the first ``m`` source packets (all of them if ``m >= k``), recovered from the
other source packets and the parity. edgewire's headline decode figure runs with a warm cache
(the inverse matrix and lookup table for that erasure pattern are built once); the cold
figure clears the caches before every call. Each figure is the best of five equal slices of
``--seconds``, and the contenders take turns slice by slice, so a noisy neighbour on a shared
machine slows them alike.
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import sys
import time
from collections.abc import Callable
from typing import Any

from edgewire.errors import EdgewireError
from edgewire.transport.fec import clear_fec_caches, encode_parity, recover

__all__ = ["add_bench_fec_arguments", "main_bench_fec", "run_bench_fec"]

_SLICES = 5
# reedsolo columns processed per timed call (keeps the timer's overhead out of its figure)
_COLUMNS_PER_CALL = 16


# one timed operation: a callable and the source payload bytes one call processes
_Op = tuple[Callable[[], object], int]


def _measure(ops: dict[str, _Op], seconds: float,
             say: Callable[[str], None]) -> dict[str, float]:
    """MB/s of every op: the best of ``_SLICES`` slices of ``seconds / _SLICES`` each.

    The ops take turns slice by slice, so a noisy neighbour on this shared machine slows all
    of them alike instead of ruining one contender's figure.
    """
    for fn, _ in ops.values():
        fn()  # warm-up: imports, caches, allocator
    budget = seconds / _SLICES
    best = dict.fromkeys(ops, 0.0)
    for n in range(_SLICES):
        say(f"slice {n + 1}/{_SLICES}")
        for name, (fn, payload) in ops.items():
            calls = 0
            start = time.perf_counter()
            while True:
                fn()
                calls += 1
                elapsed = time.perf_counter() - start
                if elapsed >= budget:
                    break
            best[name] = max(best[name], calls * payload / elapsed / 1e6)
    return best


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b > 0 else None


def _edgewire_ops(k: int, m: int, packets: list[bytes], lost: list[int]) -> dict[str, _Op]:
    parity = encode_parity(packets, m)
    received = {i: packets[i] for i in range(k) if i not in lost}
    received.update({k + j: parity[j] for j in range(m)})
    if recover(k, m, received) != packets:
        raise RuntimeError("edgewire did not recover its group")

    def cold() -> None:
        clear_fec_caches()
        recover(k, m, received)

    payload = k * len(packets[0])
    return {"edgewire encode": (lambda: encode_parity(packets, m), payload),
            "edgewire decode": (lambda: recover(k, m, received), payload),
            "edgewire decode_cold": (cold, payload)}


def _reedsolo_ops(k: int, m: int, packets: list[bytes], lost: list[int]) -> dict[str, _Op]:
    import reedsolo

    codec = reedsolo.RSCodec(m)
    size = len(packets[0])
    messages = [bytes(p[j] for p in packets) for j in range(size)]
    # the whole codeword per column; lost positions zeroed, as a receiver would hold them
    words = []
    for message in messages:
        word = bytearray(codec.encode(message))
        for pos in lost:
            word[pos] = 0
        words.append(bytes(word))
    if bytes(codec.decode(words[0], erase_pos=lost, only_erasures=True)[0]) != messages[0]:
        raise RuntimeError("reedsolo baseline did not recover its column")
    cursor = [0, 0]

    def encode() -> None:
        j = cursor[0]
        for c in range(j, j + _COLUMNS_PER_CALL):
            codec.encode(messages[c % size])
        cursor[0] = (j + _COLUMNS_PER_CALL) % size

    def decode() -> None:
        j = cursor[1]
        for c in range(j, j + _COLUMNS_PER_CALL):
            codec.decode(words[c % size], erase_pos=lost, only_erasures=True)
        cursor[1] = (j + _COLUMNS_PER_CALL) % size

    return {"reedsolo encode": (encode, _COLUMNS_PER_CALL * k),
            "reedsolo decode": (decode, _COLUMNS_PER_CALL * k)}


def _zfec_ops(k: int, m: int, packets: list[bytes], lost: list[int]) -> dict[str, _Op]:
    try:
        # imported by name: zfec ships no type information
        zfec = importlib.import_module("zfec")
    except ImportError:
        return {}
    encoder = zfec.Encoder(k, k + m)
    decoder = zfec.Decoder(k, k + m)
    blocks = tuple(packets)
    wanted = tuple(range(k, k + m))
    parity = encoder.encode(blocks, wanted)
    kept = [i for i in range(k) if i not in lost]
    nums = tuple(kept + list(range(k, k + k - len(kept))))
    rx = tuple([packets[i] for i in kept] + list(parity[: k - len(kept)]))
    if list(decoder.decode(rx, nums)) != packets:
        raise RuntimeError("zfec baseline did not recover its group")
    payload = k * len(packets[0])
    return {"zfec encode": (lambda: encoder.encode(blocks, wanted), payload),
            "zfec decode": (lambda: decoder.decode(rx, nums), payload)}


def run_bench_fec(k: int = 10, m: int = 4, size: int = 1200, seconds: float = 1.0, *,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure edgewire, reedsolo and zfec (``None`` if not installed); the JSON object.

    Raises :class:`~edgewire.errors.EdgewireError` for impossible parameters.
    """
    def say(msg: str) -> None:
        if progress is not None:
            progress(f"bench fec: {msg}")

    rng = random.Random(20240607)
    packets = [rng.randbytes(size) for _ in range(k)]
    lost = list(range(min(k, m)))
    say("preparing edgewire, reedsolo and zfec")
    ops = {**_edgewire_ops(k, m, packets, lost), **_reedsolo_ops(k, m, packets, lost),
           **_zfec_ops(k, m, packets, lost)}
    rates = _measure(ops, seconds, say)
    clear_fec_caches()

    say(", ".join(f"{op} {rate:.3f} MB/s" for op, rate in rates.items()))

    def figures(name: str) -> dict[str, float]:
        prefix = f"{name} "
        return {f"{op.removeprefix(prefix)}_MBps": round(rate, 4)
                for op, rate in rates.items() if op.startswith(prefix)}

    ours, ref, zf = figures("edgewire"), figures("reedsolo"), figures("zfec")

    def ratios(base: dict[str, float]) -> dict[str, float | None]:
        return {op: _ratio(ours[f"{op}_MBps"], base[f"{op}_MBps"]) for op in ("encode", "decode")}

    return {
        "params": {"k": k, "m": m, "size": size},
        "edgewire": ours,
        "reedsolo": ref,
        "zfec": zf or None,
        "ratio_vs_reedsolo": ratios(ref),
        "ratio_vs_zfec": ratios(zf) if zf else None,
    }


def add_bench_fec_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``edgewire bench fec`` to ``parser``."""
    parser.add_argument("--k", type=int, default=10, help="source packets per group (10)")
    parser.add_argument("--m", type=int, default=4, help="parity symbols per group (4)")
    parser.add_argument("--size", type=int, default=1200, help="bytes per packet (1200)")
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="time per measurement (default 1.0; 7 measurements)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def main_bench_fec(args: argparse.Namespace, *,
                   progress: Callable[[str], None] | None = None) -> int:
    """The CLI entry: print a table, or one JSON object with ``--json``; 2 on bad options."""
    if not 1 <= args.size <= 65535 or not args.seconds > 0:
        print("edgewire bench fec: need 1 <= --size <= 65535 and --seconds > 0",
              file=sys.stderr)
        return 2
    try:
        result = run_bench_fec(args.k, args.m, args.size, args.seconds, progress=progress)
    except EdgewireError as exc:
        print(f"edgewire bench fec: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
        return 0
    p = result["params"]
    print(f"Reed-Solomon k={p['k']} m={p['m']}, {p['size']}-byte packets "
          "(MB/s of source payload)")
    print(f"{'':<10} {'encode':>12} {'decode':>12}")
    for name in ("edgewire", "reedsolo", "zfec"):
        r = result[name]
        if r is None:
            print(f"{name:<10} {'not installed':>12}")
            continue
        print(f"{name:<10} {r['encode_MBps']:>12.3f} {r['decode_MBps']:>12.3f}")
    print(f"edgewire decode with a cold cache: {result['edgewire']['decode_cold_MBps']:.3f}")
    for name in ("reedsolo", "zfec"):
        ratio = result[f"ratio_vs_{name}"]
        if ratio is not None:
            print(f"edgewire / {name}: encode {ratio['encode']}x, decode {ratio['decode']}x")
    return 0
