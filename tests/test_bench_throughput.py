"""``edgewire bench throughput`` end to end, briefly: every contender carries data over
loopback and the JSON holds what bench/README.md says (the figures are the bench's to
measure, not this test's)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edgewire.cli.bench_throughput import ThroughputConfig, _edgewire_hub, _run_all
from edgewire.errors import LocalProtocolError


def test_every_contender_carries_data_and_is_reported() -> None:
    cfg = ThroughputConfig(seconds=0.3, warmup_s=0.2, rounds=1)
    # bounded, so a contender that hangs fails the test instead of stalling the run
    out = asyncio.run(asyncio.wait_for(_run_all(cfg, lambda _: None), 60.0))
    for mode, names in (("datagram", ("aioquic", "edgewire", "edgewire_cc")),
                        ("stream", ("aioquic", "edgewire", "edgewire_cc", "edgewire_hub"))):
        row = out[mode]
        assert sorted(row["runs"]) == sorted(names)
        for name in names:
            assert len(row["runs"][name]) == 1
            assert row["runs"][name][0] > 0, (mode, name)
        assert row["ratio"] == pytest.approx(row["edgewire_mbps"] / row["aioquic_mbps"],
                                             abs=1e-3)
        assert row["edgewire_cc_ratio"] == pytest.approx(
            row["edgewire_cc_mbps"] / row["aioquic_mbps"], abs=1e-3)
    assert "edgewire_hub_mbps" not in out["datagram"]
    assert out["stream"]["edgewire_hub_ratio"] == pytest.approx(
        out["stream"]["edgewire_hub_mbps"] / out["stream"]["edgewire_cc_mbps"], abs=1e-3)
    assert out["config"]["default_cc"] == "edgewire"


def test_the_hub_contender_sends_arrays_only(tmp_path: Path) -> None:
    with pytest.raises(LocalProtocolError, match="stream"):
        asyncio.run(_edgewire_hub("datagram", ThroughputConfig(), tmp_path / "c",
                                  tmp_path / "k"))
