"""``edgewire bench bwe-rtt``: the bwe scenarios over a sweep of round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgewire.cli.bench_bwe_rtt import parse_rtts, run_rtt_sweep
from edgewire.cli.main import main


def test_every_round_trip_is_run_and_charted(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "bwe-rtt", "--rtt-ms", "50,300", "--only", "constant",
                 "--schemes", "edgewire,reno", "--seconds", "4", "--jobs", "1",
                 "--json", "--plot", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params"]["rtts_ms"] == [50.0, 300.0]
    assert list(out["rtts"]) == ["50", "300"]
    for key in ("50", "300"):
        rows = out["rtts"][key]["constant-2mbps"]["schemes"]
        assert set(rows) == {"edgewire", "reno"}
        assert rows["edgewire"]["utilization"] > 0
    # the links really were that long: the one-way delay's floor is half the round trip
    for key, half in (("50", 25.0), ("300", 150.0)):
        row = out["rtts"][key]["constant-2mbps"]["schemes"]["reno"]
        assert half <= row["delay_p95_ms"]
    short = out["rtts"]["50"]["constant-2mbps"]["schemes"]["reno"]["delay_p95_ms"]
    long = out["rtts"]["300"]["constant-2mbps"]["schemes"]["reno"]["delay_p95_ms"]
    assert long - short > 100
    # the round trips at which every goal held are those whose goals all say so
    met = out["all_goals_met"]["edgewire"]["constant-2mbps"]
    for key in ("50", "300"):
        goals = out["rtts"][key]["constant-2mbps"]["goals"]["edgewire"]
        assert (float(key) in met) == all(goals.values())
    chart = tmp_path / "bwe-rtt.png"
    assert out["plots"] == [str(chart)]
    assert chart.read_bytes().startswith(b"\x89PNG")


def test_the_text_output_has_a_row_per_round_trip(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "bwe-rtt", "--rtt-ms", "100,100,200", "--only", "constant",
                 "--schemes", "reno", "--seconds", "2", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "constant-2mbps: utilization / p95 queueing delay (ms)" in out
    rows = [line.split()[0] for line in out.splitlines() if line.strip()[:3] in ("100", "200")]
    assert rows == ["100", "200"]  # the repeated 100 ran once


@pytest.mark.parametrize(("argv", "message"), [
    (["--rtt-ms", ""], "--rtt-ms names no round trip"),
    (["--rtt-ms", "50,abc"], "--rtt-ms wants milliseconds"),
    (["--rtt-ms", "50,0"], "rtt must be 1..2000 ms"),
    (["--rtt-ms", "nan"], "rtt must be 1..2000 ms"),
    (["--rtt-ms", "50", "--schemes", "vegas"], "unknown scheme 'vegas'"),
    (["--rtt-ms", "50", "--schemes", ","], "--schemes names no scheme"),
    (["--rtt-ms", "50", "--only", "nothing-like-this"], "matches no scenario"),
])
def test_bad_options_get_clear_errors(argv: list[str], message: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "bwe-rtt", "--seconds", "1", *argv]) == 2
    assert message in capsys.readouterr().out


def test_parse_and_sweep_refuse_what_they_cannot_run() -> None:
    assert parse_rtts(" 50, 200 ,50") == (50.0, 200.0)
    with pytest.raises(ValueError, match="no round trip"):
        run_rtt_sweep(())
    with pytest.raises(ValueError, match="rtt must be"):
        run_rtt_sweep((50.0, 5000.0))
