"""``edgewire bench codecs``: options, and the JSON shape the issue asks for."""

from __future__ import annotations

import json

import pytest

from edgewire.cli.bench_codecs import run_bench_codecs
from edgewire.cli.main import main


@pytest.mark.parametrize("argv", [["--only", "speech"], ["--seconds", "0"],
                                  ["--corpus", "10"]])
def test_bad_options_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "codecs", *argv]) == 2
    assert "error" in capsys.readouterr().out


def test_json_shape_and_goals(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("av")
    assert main(["bench", "codecs", "--json", "--only", "embeddings,tokens,audio",
                 "--seconds", "1", "--corpus", "500"]) == 0
    out = json.loads(capsys.readouterr().out)
    for codec in ("float32", "float16", "bfloat16", "int8", "int4"):
        row = out["embeddings"][codec]
        assert set(row) >= {"bytes_per_vector", "cosine_mean", "cosine_min", "recall_at_10",
                            "encode_MBps", "decode_MBps"}
    assert out["embeddings"]["float32"]["cosine_min"] == pytest.approx(1.0)
    assert out["embeddings"]["int4"]["bytes_per_vector"] < out["embeddings"]["int8"][
        "bytes_per_vector"] < out["embeddings"]["float16"]["bytes_per_vector"]
    assert set(out["tokens"]) >= {"bytes_per_token", "sse_bytes_per_token", "ratio"}
    assert out["tokens"]["ratio"] == pytest.approx(
        out["tokens"]["sse_bytes_per_token"] / out["tokens"]["bytes_per_token"], rel=0.01)
    assert set(out["audio"]) >= {"12", "24", "48"}
    assert out["audio"]["24"]["delivered_kbps"] > out["audio"]["12"]["delivered_kbps"]
    assert "video" not in out


def test_video_part_small() -> None:
    pytest.importorskip("av")
    out = run_bench_codecs(parts=("video",), seconds=0.5)
    assert set(out["video"]) >= {"h264@300", "h264@2000", "vp8@800"}
    h = out["video"]
    assert h["h264@2000"]["psnr_db"] > h["h264@300"]["psnr_db"]
    assert "video_fps>=90" in out["goals"]["media"]
