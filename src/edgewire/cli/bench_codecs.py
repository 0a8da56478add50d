"""``edgewire bench codecs``: what each payload codec costs and keeps.

* embeddings: bytes per vector, cosine similarity to the original (mean, minimum),
  top-10 nearest-neighbour recall against float32 on a 10k corpus, encode/decode MB/s
  (``bench_codecs_data.bench_embeddings``);
* tokens: bytes per token of a 1,000-token stream against an OpenAI-style JSON
  server-sent-events stream of the same tokens (``bench_codecs_data.bench_tokens``);
* audio: Opus delivered bitrate against 12/24/48 kbit/s targets, encode+decode realtime
  factor, how fast a new target takes effect (``bench_codecs_media.bench_audio``);
* video: H.264 and VP8 at 300/800/2000 kbit/s on 640x360 testsrc2, delivered bitrate,
  PSNR of decoded against source frames, encode+decode frames per second on one thread
  (``bench_codecs_media.bench_video``).

Audio and video need PyAV (the ``media`` extra); without it those parts report why they
were skipped and the rest still runs. The goals of the codec issue are checked in the
JSON (``goals``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

__all__ = ["add_bench_codecs_arguments", "main_bench_codecs", "run_bench_codecs"]

PARTS = ("embeddings", "tokens", "audio", "video")


def _goals(result: dict[str, Any]) -> dict[str, Any]:
    goals: dict[str, Any] = {}
    emb = result.get("embeddings", {})
    if "int8" in emb and "float32" in emb:
        i8, f32 = emb["int8"], emb["float32"]
        goals["int8"] = {
            "cosine_mean>=0.999": i8["cosine_mean"] >= 0.999,
            "recall_at_10>=0.98": i8["recall_at_10"] >= 0.98,
            "4x_smaller": f32["bytes_per_vector"] / i8["bytes_per_vector"] >= 4.0,
        }
    if "float16" in emb:
        goals["float16"] = {"cosine_mean>=0.99999": emb["float16"]["cosine_mean"] >= 0.99999}
    tok = result.get("tokens", {})
    if "bytes_per_token" in tok:
        goals["tokens"] = {"bytes_per_token<=4": tok["bytes_per_token"] <= 4.0,
                           "ratio>=30": tok["ratio"] >= 30.0}
    media: dict[str, bool] = {}
    for part in ("audio", "video"):
        rows = {k: v for k, v in result.get(part, {}).items()
                if isinstance(v, dict) and "within_15pct" in v}
        if rows:
            media[f"{part}_within_15pct"] = all(v["within_15pct"] for v in rows.values())
        change = result.get(part, {}).get("change", {})
        if change:
            media[f"{part}_change_within_1s"] = all(
                c["settle_s"] is not None and c["settle_s"] <= 1.0 for c in change.values())
    video_rows = [v for v in result.get("video", {}).values()
                  if isinstance(v, dict) and "fps" in v]
    if video_rows:
        # 360p30 at 3x realtime: 90 frames encoded and decoded per second
        media["video_fps>=90"] = all(v["fps"] >= 90.0 for v in video_rows)
    if media:
        goals["media"] = media
    return goals


def run_bench_codecs(*, parts: tuple[str, ...] = PARTS, seconds: float = 10.0,
                     corpus: int = 10_000, seed: int = 1,
                     progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the chosen parts; returns the JSON object ``edgewire bench codecs`` prints."""
    from edgewire.codecs.base import CodecUnavailableError

    say = progress or (lambda _msg: None)
    result: dict[str, Any] = {}
    timings: dict[str, float] = {}
    for part in parts:
        say(f"bench codecs: {part} ...")
        t0 = time.perf_counter()
        try:
            if part == "embeddings":
                from edgewire.cli.bench_codecs_data import bench_embeddings

                result[part] = bench_embeddings(n_corpus=corpus, seed=seed)
            elif part == "tokens":
                from edgewire.cli.bench_codecs_data import bench_tokens

                result[part] = bench_tokens(seed=seed)
            elif part == "audio":
                from edgewire.cli.bench_codecs_media import bench_audio

                result[part] = bench_audio(seconds=seconds)
            elif part == "video":
                from edgewire.cli.bench_codecs_media import bench_video

                result[part] = bench_video(seconds=seconds)
        except CodecUnavailableError as exc:
            result[part] = {"skipped": str(exc)}
        timings[part] = round(time.perf_counter() - t0, 2)
    result["goals"] = _goals(result)
    result["wall_s"] = timings
    return result


def add_bench_codecs_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``edgewire bench codecs``."""
    parser.add_argument("--only", default="",
                        help=f"comma-separated parts to run: {', '.join(PARTS)} (default all)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="seconds of audio and video per run (default 10)")
    parser.add_argument("--corpus", type=int, default=10_000,
                        help="embedding vectors in the nearest-neighbour corpus (default 10000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")


def main_bench_codecs(args: argparse.Namespace, *,
                      progress: Callable[[str], None] | None = None) -> int:
    """The CLI entry: tables, or JSON with ``--json``."""
    parts = tuple(p.strip() for p in args.only.split(",") if p.strip()) or PARTS
    bad = [p for p in parts if p not in PARTS]
    if bad:
        print(f"edgewire: error: unknown part(s) {bad}; choose from {', '.join(PARTS)}")
        return 2
    if not args.seconds > 0 or args.corpus < 100:
        print("edgewire: error: --seconds must be positive and --corpus at least 100")
        return 2
    result = run_bench_codecs(parts=parts, seconds=args.seconds, corpus=args.corpus,
                              seed=args.seed, progress=progress)
    if args.json:
        print(json.dumps(result))
        return 0
    _print_tables(result)
    return 0


def _print_tables(result: dict[str, Any]) -> None:
    emb = result.get("embeddings")
    if emb:
        print("embeddings (768-dim)")
        if "skipped" in emb:
            print(f"  skipped: {emb['skipped']}")
        else:
            print(f"  {'codec':<10}{'B/vector':>10}{'cos mean':>11}{'cos min':>10}"
                  f"{'recall@10':>11}{'enc MB/s':>10}{'dec MB/s':>10}")
            for name, r in emb.items():
                if not isinstance(r, dict) or "bytes_per_vector" not in r:
                    continue
                print(f"  {name:<10}{r['bytes_per_vector']:>10.1f}{r['cosine_mean']:>11.6f}"
                      f"{r['cosine_min']:>10.5f}{r['recall_at_10']:>11.3f}"
                      f"{r['encode_MBps']:>10.0f}{r['decode_MBps']:>10.0f}")
    tok = result.get("tokens")
    if tok and "bytes_per_token" in tok:
        print(f"tokens: {tok['bytes_per_token']:.2f} bytes/token, SSE JSON "
              f"{tok['sse_bytes_per_token']:.1f} bytes/token, {tok['ratio']:.0f}x smaller")
    audio = result.get("audio")
    if audio:
        print("audio (Opus)")
        for name, r in audio.items():
            if isinstance(r, dict) and "delivered_kbps" in r:
                print(f"  {name:>4} kbit/s target: delivered {r['delivered_kbps']:.1f}, "
                      f"realtime factor {r['realtime_factor']:.0f}")
            elif name == "skipped":
                print(f"  skipped: {r}")
    video = result.get("video")
    if video:
        print("video (640x360 testsrc2, one thread)")
        for name, r in video.items():
            if isinstance(r, dict) and "delivered_kbps" in r:
                print(f"  {name:<10} delivered {r['delivered_kbps']:>7.1f} kbit/s, PSNR "
                      f"{r['psnr_db']:.1f} dB, {r['fps']:.0f} fps")
            elif name == "skipped":
                print(f"  skipped: {r}")
    print(f"goals: {json.dumps(result['goals'])}")
