"""``edgewire health listen`` (its HTTP server and table) and ``edgewire demo
--health-url`` posting reports to it while the demo runs."""

from __future__ import annotations

import io
import json
import threading
import urllib.error
import urllib.request

import pytest

from edgewire.cli.health import format_row, make_server
from edgewire.cli.main import build_parser, main


def _post(url: str, data: bytes) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_demo_posts_reports_to_the_listener(capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    server = make_server("127.0.0.1", 0, out)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/health"
        assert main(["demo", "--synthetic", "--seconds", "2.5", "--json",
                     "--health-url", url]) == 0
        status, body = _post(url, b'{"schema": "edgewire.health/9"}')
    finally:
        server.shutdown()
        server.server_close()
    assert status == 400
    assert "edgewire.health/9" in str(body["error"])
    rows = out.getvalue().splitlines()
    assert len(rows) >= 2  # a report a second while the demo ran
    assert all(" demo " in row for row in rows)
    assert json.loads(capsys.readouterr().out)["channels"]


def test_parser_knows_the_health_commands() -> None:
    args = build_parser().parse_args(["health", "listen", "--port", "9999"])
    assert (args.command, args.health, args.port) == ("health", "listen", 9999)
    args = build_parser().parse_args(["demo", "--health-url", "http://x/"])
    assert args.health_url == "http://x/"


def test_format_row_survives_missing_figures() -> None:
    row = format_row({"ts": 3600.0 * 5 + 61.5, "session": "s", "path": "edge",
                      "tier": "down", "score": 0.0, "rtt_ms": {"smoothed": None},
                      "loss": {}, "bandwidth": {}, "device": {}, "reasons": ["down"]})
    assert row.split()[:4] == ["05:01:01.5", "s", "edge", "down"]
    assert row.rstrip().endswith("down")


def _example() -> object:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "examples" / "placement_decider.py"
    spec = importlib.util.spec_from_file_location("placement_decider", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_decider_policy_and_answers() -> None:
    ex: object = _example()
    choose = ex.choose  # type: ignore[attr-defined]
    assert choose("hard", {"cloud": "good", "edge": "good"}) == "cloud"
    assert choose("hard", {"cloud": "poor", "edge": "fair"}) == "edge"
    assert choose("hard", {"cloud": "down", "edge": "down"}) == "device"
    assert choose("medium", {"edge": "fair"}) == "device"
    assert choose("medium", {"edge": "excellent"}) == "edge"
    assert choose("easy", {"edge": "excellent"}) == "device"
    server = ex.serve("127.0.0.1", 0, ex.Decider("hard"))  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        report = {"schema": "edgewire.health/1", "ts": 1.0, "session": "s", "path": "cloud",
                  "tier": "poor", "score": 30.0, "rtt_ms": {"min": 1, "smoothed": 1, "p95": 1},
                  "jitter_ms": 0, "loss": {"rate": 0.2, "residual_rate": 0.1,
                                           "burst_mean": 1}, "queue_delay_ms": 0,
                  "bandwidth": {"estimate_kbps": 1, "goodput_kbps": 1}, "channels": {},
                  "device": {}}
        status, body = _post(url, json.dumps(report).encode())
        assert status == 200
        assert body["action"] == "switch"
        assert body["path"] == "device"  # no tier known for edge: treated as down
        bad_status, _ = _post(url, b"{}")
        assert bad_status == 400
    finally:
        server.shutdown()
        server.server_close()
