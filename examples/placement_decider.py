"""A small placement decider: receives edgewire.health/1 reports over HTTP and answers
with decisions (docs/HEALTH.md).

Policy: where an AI task should run follows from how hard it is and how healthy the
links are. Easy tasks stay on the device. Medium tasks go to the edge when its link is
good enough, else stay on the device. Hard tasks go to the cloud when its link is at
least fair, else the edge, else the device (degraded). A path that is down is never
chosen; the decider answers ``switch`` only when the choice differs from the path the
session reports on, and ``stay`` otherwise.

    python examples/placement_decider.py --port 8787 --difficulty hard
    edgewire demo --health-url http://127.0.0.1:8787/
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edgewire.errors import RemoteProtocolError
from edgewire.health import decode_report

RANK = {"down": 0, "poor": 1, "fair": 2, "good": 3, "excellent": 4}
#: The worst tier each placement tolerates, by task difficulty (None: never there).
NEEDS: dict[str, dict[str, str | None]] = {
    "easy": {"device": "down", "edge": None, "cloud": None},
    "medium": {"edge": "good", "device": "down", "cloud": None},
    "hard": {"cloud": "fair", "edge": "fair", "device": "down"},
}


def choose(difficulty: str, tiers: dict[str, str]) -> str:
    """The placement for a task of ``difficulty`` given each path's latest tier (the
    device needs no link)."""
    for place, worst in NEEDS[difficulty].items():
        if worst is None:
            continue
        if place == "device" or RANK[tiers.get(place, "down")] >= RANK[worst]:
            return place
    return "device"


class Decider:
    """Latest tier per path, and the decision for each incoming report."""

    def __init__(self, difficulty: str) -> None:
        self.difficulty = difficulty
        self.tiers: dict[str, str] = {}
        self.lock = threading.Lock()

    def on_report(self, report: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.tiers[report["path"]] = report["tier"]
            target = choose(self.difficulty, self.tiers)
        for outcome in report.get("decisions", []):
            print(f"  outcome: {outcome}", flush=True)
        # a single-path session reports on "default": the decision names the placement,
        # and edgewire rejects a path it does not know (that rejection comes back too)
        if target == report["path"] or (report["path"] == "default" and target == "device"):
            return {"action": "stay", "reason": f"{self.difficulty} task stays"}
        return {"action": "switch", "path": target,
                "reason": f"{self.difficulty} task, tiers {self.tiers}"}


def serve(host: str, port: int, decider: Decider) -> ThreadingHTTPServer:
    """An HTTP server answering each POSTed report with a decision."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            try:
                length = int(self.headers.get("content-length") or 0)
                report = decode_report(self.rfile.read(min(length, 1 << 20)))
            except (ValueError, RemoteProtocolError) as exc:
                self._answer(400, {"error": str(exc)})
                return
            decision = decider.on_report(report)
            print(f"{report['session']}/{report['path']}: {report['tier']} "
                  f"({report['score']}) -> {decision}", flush=True)
            self._answer(200, decision)

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return ThreadingHTTPServer((host, port), Handler)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8787)
    p.add_argument("--difficulty", choices=sorted(NEEDS), default="medium")
    args = p.parse_args(argv)
    server = serve(args.host, args.port, Decider(args.difficulty))
    print(f"placement decider on http://{args.host}:{server.server_address[1]}/",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
