"""Scenario files: the shipped library, every documented key, every rejection, event merging,
and property tests of the parser (docs/NETSIM.md is the reference)."""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edgewire.netsim import scenario as scenario_module
from edgewire.netsim.config import (
    AQM_SCHEMES,
    JITTER_DISTRIBUTIONS,
    BernoulliLoss,
    GilbertLoss,
    LinkConfig,
    LossConfig,
    Markov4Loss,
    NoLoss,
)
from edgewire.netsim.scenario import (
    RECOVERY_MODES,
    Scenario,
    ScenarioError,
    TransportSettings,
    load_scenario,
    parse_scenario,
)
from edgewire.netsim.stats import LinkStats
from edgewire.netsim.trace import load_mahimahi
from edgewire.transport.qos import ChannelKind, default_qos
from edgewire.workload.sinks import ChannelRecorder

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"
TRACES = SCENARIOS / "traces"
DOC = ROOT / "docs" / "NETSIM.md"
LIBRARY = ("good-wifi", "congested-wifi", "lte-driving", "bursty-loss", "5g-handover",
           "satellite", "step-down")
HEADER = 'name = "t"\nduration_s = 30\n'


def write(tmp_path: Path, body: str, *, header: str = HEADER, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(header + body, encoding="utf-8")
    return path


def load(tmp_path: Path, body: str, *, header: str = HEADER) -> Scenario:
    return load_scenario(write(tmp_path, body, header=header))


def parse(**data: Any) -> Scenario:
    return parse_scenario({"name": "t", "duration_s": 30, **data})


def known_keys(data: dict[str, Any]) -> set[str]:
    """The keys the parser lists in its "unknown key" message for ``data``."""
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data)
    m = re.search(r"known: ([^)]*)\)", info.value.reason)
    assert m is not None, info.value.reason
    return {k.strip() for k in m.group(1).split(",")}


@pytest.fixture(scope="module")
def small_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-line Mahimahi trace: 4 opportunities in 10 ms (4.8 Mbit/s)."""
    path = tmp_path_factory.mktemp("traces") / "small.trace"
    path.write_text("1\n1\n5\n10\n", encoding="ascii")
    return path


# ---------------------------------------------------------------------------- the library


def test_library_is_complete() -> None:
    shipped = {p.stem for p in SCENARIOS.glob("*.toml")}
    assert set(LIBRARY) <= shipped


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_scenario_loads(path: Path) -> None:
    sc = load_scenario(path)
    assert sc.name == path.stem
    assert sc.description
    assert 30 <= sc.duration_s <= 60
    # a voice/video agent: audio both ways, something else each way
    assert ChannelKind.AUDIO in {f.kind for f in sc.up}
    assert ChannelKind.AUDIO in {f.kind for f in sc.down}
    assert len(sc.up) >= 2
    assert len(sc.down) >= 2
    assert sc.transport.cc == "reno"
    assert sc.transport.recovery == "auto"
    for t in (0.0, sc.duration_s):
        for direction in ("uplink", "downlink"):
            cfg = sc.link_at(direction, t)
            assert cfg.has_bottleneck


def test_library_models_what_it_says() -> None:
    sat = load_scenario(SCENARIOS / "satellite.toml")
    assert 250 <= sat.uplink.delay_ms <= 320
    assert 250 <= sat.downlink.delay_ms <= 320

    lte = load_scenario(SCENARIOS / "lte-driving.toml")
    assert lte.uplink.trace is not None
    assert lte.downlink.trace is not None
    assert lte.uplink.trace.name == "ATT-LTE-driving-2016.up"
    assert lte.downlink.trace.name == "ATT-LTE-driving-2016.down"

    handover = load_scenario(SCENARIOS / "5g-handover.toml")
    downs = [ev.at_s for ev in handover.events
             if ev.uplink is not None and ev.uplink.down]
    assert downs
    assert not handover.link_at("uplink", handover.duration_s).down

    step = load_scenario(SCENARIOS / "step-down.toml")
    rates = [step.link_at("uplink", t).rate_kbps for t in (0.0, 25.0)]
    assert rates[0] is not None
    assert rates[1] is not None
    assert rates[1] < rates[0]

    bursty = load_scenario(SCENARIOS / "bursty-loss.toml")
    assert isinstance(bursty.uplink.loss, GilbertLoss)
    assert bursty.uplink.loss.mean_loss_rate() == pytest.approx(0.05)
    assert bursty.uplink.loss.mean_burst_length() == pytest.approx(4.0)


def test_shipped_traces_and_attribution() -> None:
    up = load_mahimahi(TRACES / "ATT-LTE-driving-2016.up")
    down = load_mahimahi(TRACES / "ATT-LTE-driving-2016.down")
    assert up.mean_rate_bps == pytest.approx(1.91e6, rel=0.01)
    assert down.mean_rate_bps == pytest.approx(4.56e6, rel=0.01)
    readme = (TRACES / "README.md").read_text(encoding="utf-8")
    for needle in ("Mahimahi", "github.com/ravinet/mahimahi", "ae477d43", "Winstein",
                   "NSDI 2013", "ATT-LTE-driving-2016.up", "ATT-LTE-driving-2016.down"):
        assert needle in readme


def test_library_readme_has_every_scenario() -> None:
    readme = (SCENARIOS / "README.md").read_text(encoding="utf-8")
    for name in LIBRARY:
        assert f"{name}.toml" in readme


# ---------------------------------------------------------------------------- top level


def test_minimal_scenario_defaults(tmp_path: Path) -> None:
    sc = load(tmp_path, "")
    assert sc.name == "t"
    assert sc.duration_s == 30.0
    assert sc.seed == 1
    assert sc.description == ""
    assert sc.uplink == LinkConfig()
    assert sc.downlink == LinkConfig()
    assert sc.events == ()
    assert sc.transport == TransportSettings()
    assert sc.source == str(tmp_path / "s.toml")
    # no [traffic]: 32 kbit/s audio up, nothing down
    assert len(sc.up) == 1
    assert sc.up[0].kind is ChannelKind.AUDIO
    assert sc.up[0].source.bitrate_bps == 32_000
    assert sc.up[0].qos == default_qos("audio")
    assert sc.down == ()


def test_empty_traffic_table_is_the_default(tmp_path: Path) -> None:
    assert load(tmp_path, "[traffic]\n").up == load(tmp_path, "").up


def test_top_level_keys(tmp_path: Path) -> None:
    sc = load(tmp_path, 'description = "d"\nseed = 42\n',
              header='name = "n"\nduration_s = 12.5\n')
    assert (sc.name, sc.description, sc.seed, sc.duration_s) == ("n", "d", 42, 12.5)


# ---------------------------------------------------------------------------- link keys

# key -> (TOML value text, expected attribute value); rate_kbps present where a key needs a
# bottleneck to mean anything
LINK_CASES: dict[str, tuple[str, Any]] = {
    "delay_ms": ("12.5", 12.5),
    "jitter_ms": ("3", 3.0),
    "jitter_distribution": ('"pareto"', "pareto"),
    "reorder": ("true", True),
    "rate_kbps": ("1500", 1500.0),
    "trace": (None, None),  # tested separately: needs a file
    "trace_start_ms": (None, None),  # tested separately: needs a trace
    "queue_packets": ("50", 50),
    "queue_bytes": ("30000", 30_000),
    "queue_ms": ("40", 40.0),
    "aqm": ('"codel"', "codel"),
    "codel_target_ms": ("3", 3.0),
    "codel_interval_ms": ("50.5", 50.5),
    "loss": ('{ model = "bernoulli", rate = 0.02 }', BernoulliLoss(rate=0.02)),
    "duplicate": ("0.01", 0.01),
    "down": ("true", True),
    "read_kbps": ("20000", 20000.0),
    "read_stall_ms": ("5", 5.0),
    "read_stall_bytes": ("65536", 65536),
    "read_buffer_bytes": ("425984", 425984),
}


def test_link_cases_cover_every_key() -> None:
    assert set(LINK_CASES) == set(scenario_module._LINK_KEYS)


@pytest.mark.parametrize("key", [k for k, (v, _) in LINK_CASES.items() if v is not None])
@pytest.mark.parametrize("table", ["link", "uplink", "downlink"])
def test_each_link_key_accepted(tmp_path: Path, key: str, table: str) -> None:
    text, expected = LINK_CASES[key]
    extra = "" if key == "rate_kbps" else "rate_kbps = 1000\n"
    sc = load(tmp_path, f"[{table}]\n{extra}{key} = {text}\n")
    changed = {"link": ("uplink", "downlink"), "uplink": ("uplink",),
               "downlink": ("downlink",)}[table]
    for direction in ("uplink", "downlink"):
        cfg = getattr(sc, direction)
        if direction in changed:
            assert getattr(cfg, key) == expected
        else:
            assert getattr(cfg, key) == getattr(LinkConfig(), key)


def test_trace_start_reads_the_trace_from_there(tmp_path: Path, small_trace: Path) -> None:
    # small.trace: opportunities at 1, 1, 5, 10 ms, period 10 ms
    sc = load(tmp_path, f'[downlink]\ntrace = "{small_trace.as_posix()}"\n'
                        f"trace_start_ms = 3\n")
    assert sc.downlink.trace is not None
    assert sc.downlink.trace.times_ms == (2, 7, 8, 8)
    assert sc.downlink.trace.period_ms == 10
    assert sc.downlink.trace.name == "small.trace@3ms"
    # a start beyond the period wraps; a start of a whole period is the trace itself
    sc = load(tmp_path, f'[link]\ntrace = "{small_trace.as_posix()}"\ntrace_start_ms = 23\n')
    assert sc.uplink.trace is not None
    assert sc.uplink.trace.times_ms == (2, 7, 8, 8)
    sc = load(tmp_path, f'[link]\ntrace = "{small_trace.as_posix()}"\ntrace_start_ms = 10\n')
    assert sc.uplink.trace is not None
    assert sc.uplink.trace.times_ms == (1, 1, 5, 10)


def test_trace_start_rejections(tmp_path: Path, small_trace: Path) -> None:
    with pytest.raises(ScenarioError, match="needs a trace"):
        load(tmp_path, "[link]\nrate_kbps = 100\ntrace_start_ms = 5\n")
    with pytest.raises(ScenarioError, match=">= 0"):
        load(tmp_path, f'[link]\ntrace = "{small_trace.as_posix()}"\ntrace_start_ms = -1\n')
    with pytest.raises(ScenarioError, match="expected an integer"):
        load(tmp_path, f'[link]\ntrace = "{small_trace.as_posix()}"\ntrace_start_ms = 2.5\n')


def test_trace_start_in_events(tmp_path: Path, small_trace: Path) -> None:
    tr = small_trace.as_posix()
    sc = load(tmp_path, f'[downlink]\ntrace = "{tr}"\ntrace_start_ms = 3\n'
                        "[[events]]\nat_s = 1\ndownlink = { loss = { model = \"none\" } }\n"
                        "[[events]]\nat_s = 2\ndownlink = { trace_start_ms = 5 }\n"
                        f'[[events]]\nat_s = 3\ndownlink = {{ trace = "{tr}" }}\n'
                        "[[events]]\nat_s = 4\ndownlink = { rate_kbps = 300 }\n")
    first = sc.link_at("downlink", 0.5).trace
    # an event that leaves the trace alone keeps the same trace object: the link does
    # not restart it
    assert sc.link_at("downlink", 1.5).trace is first
    moved = sc.link_at("downlink", 2.5).trace
    assert moved is not None
    assert moved.times_ms == (0, 5, 6, 6)
    # a trace given again without a start starts at its beginning
    again = sc.link_at("downlink", 3.5).trace
    assert again is not None
    assert again.times_ms == (1, 1, 5, 10)
    later = sc.link_at("downlink", 4.5)
    assert later.trace is None
    assert later.rate_kbps == 300


@pytest.mark.parametrize("dist", JITTER_DISTRIBUTIONS)
def test_every_jitter_distribution(tmp_path: Path, dist: str) -> None:
    sc = load(tmp_path, f'[link]\njitter_ms = 5\njitter_distribution = "{dist}"\n')
    assert sc.uplink.jitter_distribution == dist


@pytest.mark.parametrize("aqm", AQM_SCHEMES)
def test_every_aqm(tmp_path: Path, aqm: str) -> None:
    assert load(tmp_path, f'[link]\nrate_kbps = 100\naqm = "{aqm}"\n').uplink.aqm == aqm


def test_trace_relative_to_the_scenario_file(tmp_path: Path, small_trace: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    sub = tmp_path / "deep" / "dir"
    (sub / "traces").mkdir(parents=True)
    (sub / "traces" / "t.trace").write_bytes(small_trace.read_bytes())
    path = write(sub, '[uplink]\ntrace = "traces/t.trace"\n')
    monkeypatch.chdir(tmp_path)
    sc = load_scenario(path)
    assert sc.uplink.trace is not None
    assert sc.uplink.trace.times_ms == (1, 1, 5, 10)
    assert sc.uplink.mean_rate_bps() == pytest.approx(4 * 1500 * 8 / 0.010)
    assert sc.downlink.trace is None
    # absolute paths work too
    sc = load(tmp_path, f'[downlink]\ntrace = "{small_trace.as_posix()}"\n')
    assert sc.downlink.trace is not None


def test_same_trace_file_loaded_once(tmp_path: Path, small_trace: Path) -> None:
    sc = load(tmp_path, f'[link]\ntrace = "{small_trace.as_posix()}"\n')
    assert sc.uplink.trace is sc.downlink.trace


# ---------------------------------------------------------------------------- loss models


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('{ model = "none" }', NoLoss()),
        ('{ model = "bernoulli", rate = 0.05 }', BernoulliLoss(rate=0.05)),
        ('{ model = "bernoulli", rate = 0 }', BernoulliLoss(rate=0.0)),
        ('{ model = "gilbert", p = 0.01, r = 0.3 }', GilbertLoss(p=0.01, r=0.3)),
        ('{ model = "gilbert", p = 0.01, r = 0.3, h = 0.2, k = 0.99 }',
         GilbertLoss(p=0.01, r=0.3, h=0.2, k=0.99)),
        ('{ model = "markov4", p13 = 0.1 }', Markov4Loss(p13=0.1, p31=0.9)),
        ('{ model = "markov4", p13 = 0.1, p31 = 0.7, p32 = 0.2, p23 = 0.6, p14 = 0.05 }',
         Markov4Loss(p13=0.1, p31=0.7, p32=0.2, p23=0.6, p14=0.05)),
    ],
)
def test_loss_models(tmp_path: Path, table: str, expected: LossConfig) -> None:
    sc = load(tmp_path, f"[link]\nloss = {table}\n")
    assert sc.uplink.loss == expected
    assert sc.downlink.loss == expected


def test_gilbert_rate_and_burst(tmp_path: Path) -> None:
    sc = load(tmp_path, '[link]\nloss = { model = "gilbert", rate = 0.05, burst = 4 }\n')
    loss = sc.uplink.loss
    assert isinstance(loss, GilbertLoss)
    r = 1 / 4
    assert loss.r == pytest.approx(r)
    assert loss.p == pytest.approx(0.05 * r / (1 - 0.05))
    assert (loss.h, loss.k) == (0.0, 1.0)
    assert loss.mean_loss_rate() == pytest.approx(0.05)
    assert loss.mean_burst_length() == pytest.approx(4.0)


def test_gilbert_four_parameter_mean_loss(tmp_path: Path) -> None:
    sc = load(tmp_path,
              '[link]\nloss = { model = "gilbert", p = 0.01, r = 0.25, h = 0.1, k = 0.999 }\n')
    bad = 0.01 / 0.26
    assert sc.uplink.loss.mean_loss_rate() == pytest.approx(bad * 0.9 + (1 - bad) * 0.001)


def test_loss_table_replaced_as_a_whole(tmp_path: Path) -> None:
    sc = load(tmp_path, '[link]\nloss = { model = "gilbert", p = 0.1, r = 0.5, h = 0.3 }\n'
                        '[uplink]\nloss = { model = "gilbert", p = 0.2, r = 0.4 }\n')
    assert sc.uplink.loss == GilbertLoss(p=0.2, r=0.4)  # h back to its default, not 0.3
    assert sc.downlink.loss == GilbertLoss(p=0.1, r=0.5, h=0.3)


# ---------------------------------------------------------------------------- traffic


def test_traffic_cases_cover_every_key() -> None:
    documented = {kind: set(keys) for kind, keys in scenario_module._TRAFFIC_KEYS.items()}
    tested = {kind: {k for k in TRAFFIC_CASES[kind] if k not in ("deadline_ms", "priority")}
              for kind in TRAFFIC_CASES}
    assert tested == documented


# kind -> key -> (TOML value text, source-config field or "qos.<field>", expected)
TRAFFIC_CASES: dict[str, dict[str, tuple[str, str, Any]]] = {
    "audio": {"bitrate_kbps": ("24", "bitrate_bps", 24_000.0),
              "frame_ms": ("10", "frame_ms", 10.0),
              "codec": ('"g711u"', "codec", "g711u"),
              "deadline_ms": ("120", "qos.deadline_ms", 120.0),
              "priority": ("4", "qos.priority", 4)},
    "video": {"bitrate_kbps": ("750.5", "bitrate_bps", 750_500.0),
              "fps": ("24", "fps", 24.0),
              "keyframe_interval_s": ("1.5", "keyframe_interval_s", 1.5),
              "keyframe_scale": ("3", "keyframe_scale", 3.0),
              "size_jitter": ("0.1", "size_jitter", 0.1),
              "adapt": ("false", "adaptive", False),
              "codec": ('"vp8"', "codec", "vp8"),
              "deadline_ms": ("250", "qos.deadline_ms", 250.0),
              "priority": ("5", "qos.priority", 5)},
    "tokens": {"rate_per_s": ("50", "tokens_per_s", 50.0),
               "batch": ("4", "batch", 4),
               "priority": ("0", "qos.priority", 0)},
    "embeddings": {"rate_per_s": ("4", "interval_s", 0.25),
                   "dim": ("384", "dim", 384),
                   "batch": ("2", "batch", 2),
                   "dtype": ('"float16"', "dtype", "float16"),
                   "priority": ("6", "qos.priority", 6)},
}


@pytest.mark.parametrize(
    ("kind", "key"), [(kind, key) for kind, keys in TRAFFIC_CASES.items() for key in keys])
@pytest.mark.parametrize("direction", ["up", "down"])
def test_each_traffic_key_accepted(tmp_path: Path, kind: str, key: str,
                                   direction: str) -> None:
    text, attr, expected = TRAFFIC_CASES[kind][key]
    sc = load(tmp_path, f"[traffic.{direction}]\n{kind} = {{ {key} = {text} }}\n")
    flows = sc.up if direction == "up" else sc.down
    assert [f.kind for f in flows] == [ChannelKind(kind)]
    other = sc.down if direction == "up" else sc.up
    assert other == ()
    flow = flows[0]
    got = getattr(flow.qos, attr[4:]) if attr.startswith("qos.") else getattr(flow.source, attr)
    assert got == (pytest.approx(expected) if isinstance(expected, float) else expected)


def test_traffic_defaults_per_kind(tmp_path: Path) -> None:
    sc = load(tmp_path, "[traffic.up]\naudio = {}\nvideo = {}\n"
                        "[traffic.down]\ntokens = {}\nembeddings = {}\n")
    audio, video = sc.up
    tokens, embeddings = sc.down
    assert (audio.source.bitrate_bps, audio.source.frame_ms) == (32_000, 20.0)
    assert (audio.qos.deadline_ms, audio.qos.priority) == (150.0, 0)
    assert (video.source.bitrate_bps, video.source.fps) == (1_000_000, 30.0)
    assert (video.qos.deadline_ms, video.qos.priority) == (300.0, 2)
    assert (tokens.source.tokens_per_s, tokens.source.batch, tokens.qos.priority) == (20.0, 1, 1)
    assert embeddings.source.interval_s == 0.5
    assert (embeddings.source.dim, embeddings.source.batch) == (768, 8)
    assert (embeddings.source.dtype, embeddings.qos.priority) == ("float32", 3)
    assert tokens.qos.deadline_ms is None
    assert tokens.qos.reliable


def test_flows_in_kind_order(tmp_path: Path) -> None:
    sc = load(tmp_path, "[traffic.up]\nembeddings = {}\ntokens = {}\nvideo = {}\naudio = {}\n")
    assert [f.kind.value for f in sc.up] == ["audio", "video", "tokens", "embeddings"]


# ---------------------------------------------------------------------------- transport


@pytest.mark.parametrize("cc", ["reno", "cubic"])
def test_transport_keys(tmp_path: Path, cc: str) -> None:
    sc = load(tmp_path, f'[transport]\ncc = "{cc}"\nrecovery = "none"\n'
                        "max_datagram_size = 1350\n")
    assert sc.transport == TransportSettings(cc=cc, recovery="none", max_datagram_size=1350)


def test_transport_bwe_table_sets_estimator_settings(tmp_path: Path) -> None:
    from edgewire.transport.bwe import BweConfig

    sc = load(tmp_path, "[transport]\nestimator = \"delivery\"\n[transport.bwe]\n"
                        "start_bps = 600000\n\"delivery.gain\" = 0.5\n"
                        "[transport.bwe.delivery]\nqueue_target = 0.02\n")
    bwe = sc.transport.bwe
    assert (bwe.start_bps, bwe.delivery.gain, bwe.delivery.queue_target) == (600e3, 0.5, 0.02)
    assert parse().transport.bwe == BweConfig()
    for table, reason in (({"delivery": {"queue_targt": 0.1}}, r"delivery\.queue_targt: no"),
                          ({"start_bps": "fast"}, "start_bps: expected a number"),
                          ({"delivery": {"gain": 99}}, r"delivery\.gain must be")):
        with pytest.raises(ScenarioError, match=reason) as info:
            parse(transport={"bwe": table})
        assert info.value.key == "transport.bwe"
    with pytest.raises(ScenarioError, match="expected a table"):
        parse(transport={"bwe": 3})


def test_recovery_modes_documented_value() -> None:
    assert RECOVERY_MODES == ("none", "fec", "arq", "hybrid", "auto")
    assert TransportSettings().recovery == "auto"


# ---------------------------------------------------------------------------- rejections

# (TOML body, key the error must carry, text the message must contain)
UNKNOWN_KEYS = [
    ("colour = 1\n", "colour", "unknown key"),
    ("[link]\ndelay = 5\n", "link.delay", "unknown key"),
    ("[uplink]\nlatency_ms = 5\n", "uplink.latency_ms", "unknown key"),
    ("[downlink]\nbandwidth = 5\n", "downlink.bandwidth", "unknown key"),
    ('[link]\nloss = { model = "bernoulli", rate = 0.1, burst = 2 }\n', "uplink.loss.burst",
     "unknown key"),
    ('[link]\nloss = { model = "none", rate = 0.1 }\n', "uplink.loss.rate", "unknown key"),
    ("[traffic.up]\nscreen = { fps = 5 }\n", "traffic.up.screen", "unknown key"),
    ("[traffic.up]\naudio = { vad = 5 }\n", "traffic.up.audio.vad", "unknown key"),
    ("[traffic.down]\ntokens = { deadline_ms = 100 }\n", "traffic.down.tokens.deadline_ms",
     "unknown key"),
    ("[traffic.down]\nembeddings = { deadline_ms = 100 }\n",
     "traffic.down.embeddings.deadline_ms", "unknown key"),
    ("[traffic.sideways]\naudio = {}\n", "traffic.sideways", "unknown key"),
    ("[[events]]\nat_s = 1\nwhen = 2\nlink = { down = true }\n", "events[0].when",
     "unknown key"),
    ("[[events]]\nat_s = 1\nlink = { speed = 2 }\n", "events[0].link.speed", "unknown key"),
    ("[transport]\nfec = true\n", "transport.fec", "unknown key"),
]

WRONG_TYPES = [
    ("", "name", "expected a string", 'name = 5\nduration_s = 30\n'),
    ("", "duration_s", "expected a number", 'name = "t"\nduration_s = "10"\n'),
    ("", "duration_s", "boolean", 'name = "t"\nduration_s = true\n'),
    ("seed = 1.5\n", "seed", "expected an integer", HEADER),
    ("seed = true\n", "seed", "boolean", HEADER),
    ("description = 5\n", "description", "expected a string", HEADER),
    ("link = 5\n", "link", "expected a table", HEADER),
    ("uplink = [1]\n", "uplink", "expected a table", HEADER),
    ("[link]\ndelay_ms = true\n", "link.delay_ms", "boolean", HEADER),
    ("[link]\njitter_ms = false\n", "link.jitter_ms", "boolean", HEADER),
    ('[link]\nrate_kbps = "fast"\n', "link.rate_kbps", "expected a number", HEADER),
    ("[link]\nreorder = 1\n", "link.reorder", "expected a boolean", HEADER),
    ('[link]\ndown = "yes"\n', "link.down", "expected a boolean", HEADER),
    ("[link]\nqueue_packets = 10.5\n", "link.queue_packets", "expected an integer", HEADER),
    ("[link]\nqueue_packets = true\n", "link.queue_packets", "boolean", HEADER),
    ("[link]\njitter_distribution = 3\n", "link.jitter_distribution", "expected a string",
     HEADER),
    ("[link]\ntrace = 3\n", "link.trace", "expected a string", HEADER),
    ('[link]\nloss = "bernoulli"\n', "link.loss", "expected a table", HEADER),
    ('[link]\nloss = { model = "bernoulli", rate = true }\n', "uplink.loss.rate", "boolean",
     HEADER),
    ('[link]\nloss = { model = "bernoulli", rate = "5%" }\n', "uplink.loss.rate",
     "expected a number", HEADER),
    ("[link]\nduplicate = true\n", "link.duplicate", "boolean", HEADER),
    ("[link]\ndelay_ms = inf\n", "link.delay_ms", "finite", HEADER),
    ("[link]\ndelay_ms = nan\n", "link.delay_ms", "finite", HEADER),
    ("events = { at_s = 1 }\n", "events", "array", HEADER),
    ("events = [1]\n", "events[0]", "expected a table", HEADER),
    ('[[events]]\nat_s = "1"\nlink = { down = true }\n', "events[0].at_s", "expected a number",
     HEADER),
    ("[[events]]\nat_s = true\nlink = { down = true }\n", "events[0].at_s", "boolean", HEADER),
    ("[[events]]\nat_s = 1\nlink = 5\n", "events[0].link", "expected a table", HEADER),
    ("[[events]]\nat_s = 1\nuplink = { down = 1 }\n", "events[0].uplink.down",
     "expected a boolean", HEADER),
    ("[traffic]\nup = 5\n", "traffic.up", "expected a table", HEADER),
    ("[traffic.up]\naudio = 5\n", "traffic.up.audio", "expected a table", HEADER),
    ("[traffic.up]\naudio = { bitrate_kbps = true }\n", "traffic.up.audio.bitrate_kbps",
     "boolean", HEADER),
    ('[traffic.up]\nvideo = { fps = "30" }\n', "traffic.up.video.fps", "expected a number",
     HEADER),
    ("[traffic.down]\ntokens = { batch = 1.5 }\n", "traffic.down.tokens.batch",
     "expected an integer", HEADER),
    ("[traffic.up]\naudio = { priority = 1.0 }\n", "traffic.up.audio.priority",
     "expected an integer", HEADER),
    ("[traffic.up]\naudio = { deadline_ms = true }\n", "traffic.up.audio.deadline_ms",
     "boolean", HEADER),
    ("[traffic.up]\nembeddings = { dtype = 16 }\n", "traffic.up.embeddings.dtype",
     "expected a string", HEADER),
    ("transport = 1\n", "transport", "expected a table", HEADER),
    ("[transport]\ncc = 5\n", "transport.cc", "expected a string", HEADER),
    ("[transport]\nrecovery = false\n", "transport.recovery", "boolean", HEADER),
    ("[transport]\nmax_datagram_size = 1200.0\n", "transport.max_datagram_size",
     "expected an integer", HEADER),
]

IMPOSSIBLE = [
    ("", "name", "missing", 'duration_s = 30\n'),
    ("", "duration_s", "missing", 'name = "t"\n'),
    ("", "duration_s", "must be in", 'name = "t"\nduration_s = 0\n'),
    ("", "duration_s", "must be in", 'name = "t"\nduration_s = -5\n'),
    ("", "duration_s", "must be in", 'name = "t"\nduration_s = 100000\n'),
    ("seed = -1\n", "seed", "must be in", HEADER),
    ("[link]\ndelay_ms = -1\n", "uplink", "delay_ms", HEADER),
    ("[downlink]\njitter_ms = -0.5\n", "downlink", "jitter_ms", HEADER),
    ('[link]\njitter_distribution = "cauchy"\n', "uplink", "jitter_distribution", HEADER),
    ("[link]\nrate_kbps = 0\n", "uplink", "rate_kbps", HEADER),
    ("[link]\nrate_kbps = -5\n", "uplink", "rate_kbps", HEADER),
    ('[link]\nrate_kbps = 100\ntrace = "{trace}"\n', "uplink", "not both", HEADER),
    ("[link]\nqueue_packets = 10\nqueue_ms = 20\n", "uplink", "queue_packets, queue_bytes",
     HEADER),
    ("[uplink]\nqueue_bytes = 3000\nqueue_ms = 20\n", "uplink", "queue_packets, queue_bytes",
     HEADER),
    ("[link]\nqueue_packets = 0\n", "uplink", "queue_packets", HEADER),
    ("[link]\nqueue_bytes = 100\n", "uplink", "queue_bytes", HEADER),
    ("[link]\nqueue_ms = 0\n", "uplink", "queue_ms", HEADER),
    ("[link]\nduplicate = 2\n", "uplink", "duplicate", HEADER),
    ('[link]\naqm = "red"\n', "uplink", "aqm", HEADER),
    ("[link]\ncodel_target_ms = 0\n", "uplink", "codel_target_ms", HEADER),
    ("[link]\ncodel_interval_ms = -1\n", "uplink", "codel_interval_ms", HEADER),
    ('[link]\nloss = { model = "bernoulli", rate = 1.5 }\n', "uplink.loss", "rate", HEADER),
    ('[link]\nloss = { model = "bernoulli", rate = -0.1 }\n', "uplink.loss", "rate", HEADER),
    ('[link]\nloss = { model = "bernoulli" }\n', "uplink.loss.rate", "missing", HEADER),
    ('[link]\nloss = { model = "gilbertt", rate = 0.1 }\n', "uplink.loss.model",
     "unknown loss model", HEADER),
    ("[link]\nloss = { rate = 0.1 }\n", "uplink.loss.model", "missing", HEADER),
    ('[link]\nloss = { model = "gilbert", rate = 0.05, burst = 4, p = 0.1 }\n',
     "uplink.loss", "not a mix", HEADER),
    ('[link]\nloss = { model = "gilbert", rate = 0.05, r = 0.5 }\n', "uplink.loss",
     "not a mix", HEADER),
    ('[link]\nloss = { model = "gilbert", rate = 0.05 }\n', "uplink.loss", "not a mix",
     HEADER),
    ('[link]\nloss = { model = "gilbert", rate = 0.05, burst = 0.5 }\n', "uplink.loss",
     "burst", HEADER),
    ('[link]\nloss = { model = "gilbert", rate = 0.9, burst = 1.5 }\n', "uplink.loss",
     "> 1", HEADER),
    ('[link]\nloss = { model = "gilbert", rate = 1, burst = 3 }\n', "uplink.loss",
     "rate must be below 1", HEADER),
    ('[link]\nloss = { model = "gilbert", p = 0.1 }\n', "uplink.loss", "p and r", HEADER),
    ('[link]\nloss = { model = "gilbert", p = 0.1, r = 0 }\n', "uplink.loss", "r = 0", HEADER),
    ('[link]\nloss = { model = "gilbert", p = 0.1, r = 0.5, k = 1.1 }\n', "uplink.loss",
     "k must be a probability", HEADER),
    ('[link]\nloss = { model = "markov4", p31 = 0.5 }\n', "uplink.loss.p13", "missing",
     HEADER),
    ('[link]\nloss = { model = "markov4", p13 = 0.7, p14 = 0.5 }\n', "uplink.loss",
     "p13 + p14", HEADER),
    ('[link]\nloss = { model = "markov4", p13 = 0.1, p31 = 0.7, p32 = 0.5 }\n', "uplink.loss",
     "p31 + p32", HEADER),
    ('[link]\nloss = { model = "markov4", p13 = 1.5 }\n', "uplink.loss", "p13", HEADER),
    ("[[events]]\nat_s = 31\nlink = { down = true }\n", "events[0].at_s", "duration_s",
     HEADER),
    ("[[events]]\nat_s = -1\nlink = { down = true }\n", "events[0].at_s", "duration_s",
     HEADER),
    ("[[events]]\nat_s = nan\nlink = { down = true }\n", "events[0].at_s", "finite", HEADER),
    ("[[events]]\nlink = { down = true }\n", "events[0].at_s", "missing", HEADER),
    ("[[events]]\nat_s = 3\n", "events[0]", "changes nothing", HEADER),
    ("[[events]]\nat_s = 3\nuplink = { delay_ms = -4 }\n", "events[0].uplink", "delay_ms",
     HEADER),
    ("[[events]]\nat_s = 3\nlink = { rate_kbps = 0 }\n", "events[0].uplink", "rate_kbps",
     HEADER),
    ("[[events]]\nat_s = 1\nlink = { down = true }\n[[events]]\nat_s = 2\n"
     'downlink = { loss = { model = "bernoulli", rate = 2 } }\n', "events[1].downlink.loss",
     "rate", HEADER),
    ('[link]\ntrace = "no-such-file.trace"\n', "uplink.trace", "not found", HEADER),
    ('[downlink]\ntrace = "bad.trace"\n', "downlink.trace", "not an integer", HEADER),
    ('[downlink]\ntrace = "backwards.trace"\n', "downlink.trace", "before the previous",
     HEADER),
    ('[downlink]\ntrace = "empty.trace"\n', "downlink.trace", "empty", HEADER),
    ('[downlink]\ntrace = "zero.trace"\n', "downlink.trace", "> 0 ms", HEADER),
    ('[downlink]\ntrace = "."\n', "downlink.trace", "cannot read", HEADER),
    ('[transport]\ncc = "bbr9"\n', "transport.cc", "unknown congestion controller", HEADER),
    ('[transport]\nrecovery = "magic"\n', "transport.recovery", "unknown recovery", HEADER),
    ("[transport]\nmax_datagram_size = 1000\n", "transport.max_datagram_size", "1200",
     HEADER),
    ("[traffic.up]\n", "traffic", "no channel", HEADER),
    ("[traffic.up]\naudio = { bitrate_kbps = 0 }\n", "traffic.up.audio", "bitrate", HEADER),
    ("[traffic.up]\naudio = { bitrate_kbps = 0.01, frame_ms = 1 }\n", "traffic.up.audio",
     "byte", HEADER),
    ("[traffic.up]\naudio = { deadline_ms = 0 }\n", "traffic.up.audio", "deadline_ms",
     HEADER),
    ("[traffic.up]\naudio = { priority = 9 }\n", "traffic.up.audio", "priority", HEADER),
    ("[traffic.up]\nvideo = { fps = -1 }\n", "traffic.up.video", "fps", HEADER),
    ("[traffic.up]\nvideo = { keyframe_scale = 0.5 }\n", "traffic.up.video",
     "keyframe_scale", HEADER),
    ("[traffic.up]\nvideo = { size_jitter = -0.1 }\n", "traffic.up.video", "size_jitter",
     HEADER),
    ("[traffic.down]\ntokens = { rate_per_s = 0 }\n", "traffic.down.tokens", "tokens_per_s",
     HEADER),
    ("[traffic.down]\ntokens = { batch = 0 }\n", "traffic.down.tokens", "batch", HEADER),
    ("[traffic.down]\nembeddings = { rate_per_s = 0 }\n",
     "traffic.down.embeddings.rate_per_s", "> 0", HEADER),
    ("[traffic.down]\nembeddings = { rate_per_s = -2 }\n",
     "traffic.down.embeddings.rate_per_s", "> 0", HEADER),
    ('[traffic.down]\nembeddings = { dtype = "int8" }\n', "traffic.down.embeddings", "dtype",
     HEADER),
    ("[traffic.down]\nembeddings = { dim = 0 }\n", "traffic.down.embeddings", "dim", HEADER),
]


@pytest.fixture
def bad_traces(tmp_path: Path) -> Path:
    (tmp_path / "bad.trace").write_text("1\n2\nthree\n", encoding="ascii")
    (tmp_path / "backwards.trace").write_text("5\n3\n", encoding="ascii")
    (tmp_path / "empty.trace").write_text("\n", encoding="ascii")
    (tmp_path / "zero.trace").write_text("0\n0\n", encoding="ascii")
    (tmp_path / "good.trace").write_text("1\n2\n", encoding="ascii")
    return tmp_path


def _expect_error(path: Path, key: str, needle: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    err = info.value
    message = str(err)
    assert err.source == str(path)
    assert message.startswith(str(path))
    assert err.key == key, message
    assert key in message
    assert needle in err.reason, message
    return err


@pytest.mark.parametrize(("body", "key", "needle"), UNKNOWN_KEYS)
def test_unknown_keys_rejected(tmp_path: Path, body: str, key: str, needle: str) -> None:
    err = _expect_error(write(tmp_path, body), key, needle)
    assert "known:" in err.reason


@pytest.mark.parametrize(("body", "key", "needle", "header"), WRONG_TYPES)
def test_wrong_types_rejected(tmp_path: Path, body: str, key: str, needle: str,
                              header: str) -> None:
    _expect_error(write(tmp_path, body, header=header), key, needle)


@pytest.mark.parametrize(("body", "key", "needle", "header"), IMPOSSIBLE)
def test_impossible_values_rejected(bad_traces: Path, body: str, key: str, needle: str,
                                    header: str) -> None:
    body = body.replace("{trace}", "good.trace")
    _expect_error(write(bad_traces, body, header=header), key, needle)


def test_link_value_errors_name_the_key_in_the_reason(tmp_path: Path) -> None:
    err = _expect_error(write(tmp_path, "[link]\ndelay_ms = -1\n"), "uplink", "delay_ms")
    assert "delay_ms" in str(err)


def test_malformed_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "[link\ndelay_ms = 5\n")
    err = _expect_error(path, "", "invalid TOML")
    assert str(err).startswith(f"{path}: invalid TOML")


def test_duplicate_toml_key(tmp_path: Path) -> None:
    _expect_error(write(tmp_path, "seed = 1\nseed = 2\n"), "", "invalid TOML")


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(HEADER.encode() + b'description = "caf\xe9"\n')
    _expect_error(path, "", "not UTF-8")


def test_missing_file(tmp_path: Path) -> None:
    _expect_error(tmp_path / "nope.toml", "", "file not found")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    _expect_error(tmp_path, "", "cannot read")


def test_parse_scenario_rejects_non_tables() -> None:
    with pytest.raises(ScenarioError, match="a scenario is a table"):
        parse_scenario([1, 2])  # type: ignore[arg-type]


def test_error_names_the_dict_source() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario({"name": "t", "duration_s": 0}, source="inline")
    assert str(info.value).startswith("inline: duration_s:")


# -- inputs that once escaped as bare exceptions


@pytest.mark.parametrize("model", ["[]", "{}"])
def test_unhashable_loss_model_rejected(tmp_path: Path, model: str) -> None:
    _expect_error(write(tmp_path, f"[link]\nloss = {{ model = {model} }}\n"),
                  "uplink.loss.model", "unknown loss model")


HUGE = "1" + "0" * 400  # tomllib accepts integers of any size; float() of this would overflow


@pytest.mark.parametrize(
    ("body", "header", "key"),
    [
        ("", f'name = "t"\nduration_s = {HUGE}\n', "duration_s"),
        (f"[link]\ndelay_ms = {HUGE}\n", HEADER, "link.delay_ms"),
        (f'[link]\nloss = {{ model = "bernoulli", rate = {HUGE} }}\n', HEADER, "uplink.loss"),
        (f"[[events]]\nat_s = {HUGE}\nlink = {{ down = true }}\n", HEADER, "events[0].at_s"),
        (f"[traffic.up]\naudio = {{ bitrate_kbps = {HUGE} }}\n", HEADER, "traffic.up.audio"),
        (f"[traffic.up]\naudio = {{ deadline_ms = {HUGE} }}\n", HEADER, "traffic.up.audio"),
    ],
    ids=["duration_s", "delay_ms", "loss.rate", "at_s", "bitrate_kbps", "deadline_ms"],
)
def test_integers_beyond_float_range_rejected(tmp_path: Path, body: str, header: str,
                                              key: str) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, body, header=header))
    assert info.value.key.startswith(key)


def test_markov4_negative_p31_rejected(tmp_path: Path) -> None:
    _expect_error(write(tmp_path, '[link]\nloss = { model = "markov4", p13 = 0.1, p31 = -1 }\n'),
                  "uplink.loss", "p31")


def test_trace_path_with_nul_rejected(tmp_path: Path) -> None:
    _expect_error(write(tmp_path, '[link]\ntrace = "a\\u0000b"\n'), "uplink.trace", "trace")


# ---------------------------------------------------------------------------- merging


def test_direction_overrides_of_link(tmp_path: Path, small_trace: Path) -> None:
    sc = load(tmp_path, "[link]\ndelay_ms = 10\nrate_kbps = 1000\nqueue_packets = 20\n"
                        "[uplink]\nrate_kbps = 500\nqueue_ms = 80\n"
                        f'[downlink]\ntrace = "{small_trace.as_posix()}"\n')
    assert (sc.uplink.delay_ms, sc.uplink.rate_kbps) == (10.0, 500.0)
    # queue_ms in the override removes the inherited queue_packets
    assert (sc.uplink.queue_packets, sc.uplink.queue_ms) == (None, 80.0)
    # trace in the override removes the inherited rate
    assert sc.downlink.rate_kbps is None
    assert sc.downlink.trace is not None
    assert (sc.downlink.delay_ms, sc.downlink.queue_packets) == (10.0, 20)


def test_rate_in_an_event_replaces_a_trace(tmp_path: Path, small_trace: Path) -> None:
    sc = load(tmp_path, f'[link]\ndelay_ms = 30\ntrace = "{small_trace.as_posix()}"\n'
                        "[[events]]\nat_s = 10\nuplink = { rate_kbps = 500 }\n"
                        "[[events]]\nat_s = 20\n"
                        f'uplink = {{ trace = "{small_trace.as_posix()}" }}\n')
    first, second = sc.events
    assert first.downlink is None
    assert first.uplink is not None
    assert (first.uplink.rate_kbps, first.uplink.trace) == (500.0, None)
    assert first.uplink.delay_ms == 30.0
    assert second.uplink is not None
    assert second.uplink.rate_kbps is None
    assert second.uplink.trace == sc.uplink.trace


def test_queue_key_in_an_event_replaces_the_others(tmp_path: Path) -> None:
    sc = load(tmp_path, "[link]\nrate_kbps = 800\nqueue_bytes = 30000\n"
                        "[[events]]\nat_s = 5\nlink = { queue_packets = 7 }\n")
    cfg = sc.link_at("downlink", 5)
    assert (cfg.queue_packets, cfg.queue_bytes, cfg.queue_ms) == (7, None, None)
    assert cfg.rate_kbps == 800.0


def test_blackout_down_then_up(tmp_path: Path) -> None:
    sc = load(tmp_path, '[link]\ndelay_ms = 20\nrate_kbps = 2000\n'
                        'loss = { model = "bernoulli", rate = 0.01 }\n'
                        "[[events]]\nat_s = 10\nlink = { down = true }\n"
                        "[[events]]\nat_s = 11.5\nlink = { down = false }\n")
    for direction in ("uplink", "downlink"):
        before = sc.link_at(direction, 9.99)
        during = sc.link_at(direction, 10.0)
        after = sc.link_at(direction, 11.5)
        assert not before.down
        assert during.down
        assert not after.down
        # a blackout changes nothing else: the link comes back as it was
        assert after == before
        assert during == LinkConfig(delay_ms=20, rate_kbps=2000,
                                    loss=BernoulliLoss(rate=0.01), down=True)


def test_event_link_applies_to_both_and_directions_override(tmp_path: Path) -> None:
    sc = load(tmp_path, "[link]\ndelay_ms = 10\n"
                        "[[events]]\nat_s = 1\nlink = { delay_ms = 50, jitter_ms = 5 }\n"
                        "downlink = { delay_ms = 70 }\n")
    (ev,) = sc.events
    assert ev.uplink is not None
    assert ev.downlink is not None
    assert (ev.uplink.delay_ms, ev.uplink.jitter_ms) == (50.0, 5.0)
    assert (ev.downlink.delay_ms, ev.downlink.jitter_ms) == (70.0, 5.0)


def test_event_changes_only_the_named_direction(tmp_path: Path) -> None:
    sc = load(tmp_path, "[[events]]\nat_s = 1\nuplink = { delay_ms = 50 }\n")
    (ev,) = sc.events
    assert ev.uplink == LinkConfig(delay_ms=50)
    assert ev.downlink is None
    assert sc.link_at("downlink", 29) == LinkConfig()


def test_events_accumulate(tmp_path: Path) -> None:
    sc = load(tmp_path, "[uplink]\nrate_kbps = 1000\n"
                        "[[events]]\nat_s = 2\nuplink = { delay_ms = 40 }\n"
                        '[[events]]\nat_s = 4\nlink = { loss = { model = "bernoulli", '
                        "rate = 0.1 } }\n")
    cfg = sc.link_at("uplink", 4)
    assert (cfg.rate_kbps, cfg.delay_ms, cfg.loss) == (1000.0, 40.0, BernoulliLoss(rate=0.1))
    down = sc.link_at("downlink", 4)
    assert (down.rate_kbps, down.delay_ms, down.loss) == (None, 0.0, BernoulliLoss(rate=0.1))


def test_events_sorted_by_time_ties_in_file_order(tmp_path: Path) -> None:
    sc = load(tmp_path, "[[events]]\nat_s = 8\nuplink = { delay_ms = 3 }\n"
                        "[[events]]\nat_s = 2\nuplink = { delay_ms = 1 }\n"
                        "[[events]]\nat_s = 8\nuplink = { delay_ms = 4 }\n"
                        "[[events]]\nat_s = 0\nuplink = { jitter_ms = 2 }\n")
    assert [ev.at_s for ev in sc.events] == [0.0, 2.0, 8.0, 8.0]
    delays = [ev.uplink.delay_ms for ev in sc.events if ev.uplink is not None]
    assert delays == [0.0, 1.0, 3.0, 4.0]
    # merged in time order: the jitter set at 0 s is still there at 8 s
    assert sc.link_at("uplink", 8).jitter_ms == 2.0
    assert sc.link_at("uplink", 8).delay_ms == 4.0


def test_event_at_the_very_end_is_allowed(tmp_path: Path) -> None:
    sc = load(tmp_path, "[[events]]\nat_s = 30\nlink = { down = true }\n")
    assert sc.link_at("uplink", 30).down
    assert not sc.link_at("uplink", 29.999).down


def test_link_at(tmp_path: Path) -> None:
    sc = load(tmp_path, "[link]\nrate_kbps = 4000\n"
                        "[[events]]\nat_s = 10\nuplink = { rate_kbps = 1000 }\n"
                        "[[events]]\nat_s = 20\nlink = { rate_kbps = 3000 }\n")
    up = [sc.link_at("uplink", t).rate_kbps for t in (0, 9.999, 10, 15, 20, 25, 1e9)]
    assert up == [4000.0, 4000.0, 1000.0, 1000.0, 3000.0, 3000.0, 3000.0]
    down = [sc.link_at("downlink", t).rate_kbps for t in (0, 10, 15, 20)]
    assert down == [4000.0, 4000.0, 4000.0, 3000.0]
    assert sc.link_at("uplink", -1) is sc.uplink


# ---------------------------------------------------------------------------- properties

_TOP_KEYS = ("name", "description", "duration_s", "seed", "link", "uplink", "downlink",
             "events", "transport", "traffic")
_ALL_KEYS = sorted({*_TOP_KEYS, *scenario_module._LINK_KEYS, "model", "at_s", "up", "down",
                    *(p for ps in scenario_module._LOSS_PARAMS.values() for p in ps),
                    *scenario_module._TRAFFIC_KEYS, "deadline_ms", "priority",
                    *(k for ks in scenario_module._TRAFFIC_KEYS.values() for k in ks),
                    *(f.name for f in fields(TransportSettings))})
_STRINGS = sorted({*scenario_module._LOSS_PARAMS, *JITTER_DISTRIBUTIONS, *AQM_SCHEMES,
                   "reno", "cubic", "none", "float16", "float32", "int8", "", "."})

# TOML integers are 64-bit in the spec (tomllib accepts more: see the test above);
# NUL never appears in these strings (see test_trace_path_with_nul_rejected)
_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=-3, max_value=3000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1.0, max_value=2.0),
    st.sampled_from(_STRINGS),
    st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=6),
)
_keys = st.one_of(st.sampled_from(_ALL_KEYS), st.text(max_size=6))
_values = st.recursive(
    _scalars,
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(_keys, children, max_size=4)),
    max_leaves=10,
)
_loss_tables = st.one_of(
    st.fixed_dictionaries(
        {"model": st.sampled_from(sorted(scenario_module._LOSS_PARAMS))},
        optional={p: _scalars for ps in scenario_module._LOSS_PARAMS.values() for p in ps}),
    st.dictionaries(_keys, _scalars, max_size=3),
)
_link_tables = st.dictionaries(
    st.one_of(st.sampled_from(sorted(scenario_module._LINK_KEYS)), _keys),
    st.one_of(_scalars, _loss_tables), max_size=5)
_events = st.lists(
    st.fixed_dictionaries({}, optional={"at_s": _scalars, "link": _link_tables,
                                        "uplink": _link_tables, "downlink": _link_tables,
                                        "other": _values}),
    max_size=3)
_channel_tables = st.dictionaries(_keys, _scalars, max_size=4)
_traffic = st.dictionaries(
    st.one_of(st.sampled_from(["up", "down"]), _keys),
    st.one_of(st.dictionaries(st.one_of(st.sampled_from(sorted(scenario_module._TRAFFIC_KEYS)),
                                        _keys), _channel_tables, max_size=3), _values),
    max_size=2)


def _mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` nine times in ten, else ``bad``."""
    return st.integers(0, 9).flatmap(lambda i: good if i else bad)


# mostly well-formed at the top, so that most examples reach the nested tables
_near_valid = st.fixed_dictionaries(
    {"name": _mostly(st.just("h"), _scalars),
     "duration_s": _mostly(st.sampled_from([5, 10, 30.0, 60]), _scalars)},
    optional={"description": _mostly(st.just("d"), _scalars),
              "seed": _mostly(st.integers(0, 2**63 - 1), _scalars),
              "link": _link_tables, "uplink": _link_tables, "downlink": _link_tables,
              "events": _events,
              "transport": st.dictionaries(
                  st.one_of(st.sampled_from(["cc", "recovery", "max_datagram_size"]),
                            _keys), _scalars, max_size=3),
              "traffic": _traffic})
_scenarios = st.one_of(_near_valid, _near_valid, _near_valid,
                       st.dictionaries(_keys, _values, max_size=5))


def _unhashable_model(value: Any) -> bool:
    """A ``model`` key holding a list or table anywhere (the TypeError bug above)."""
    if isinstance(value, dict):
        if isinstance(value.get("model"), list | dict):
            return True
        return any(_unhashable_model(v) for v in value.values())
    if isinstance(value, list):
        return any(_unhashable_model(v) for v in value)
    return False


@settings(max_examples=400, deadline=None)
@given(data=_scenarios)
def test_arbitrary_tables_parse_or_raise_scenario_error(tmp_path_factory: pytest.TempPathFactory,
                                                        data: dict[str, Any]) -> None:
    assume(not _unhashable_model(data))
    base = tmp_path_factory.getbasetemp()
    error: ScenarioError | None = None
    try:
        sc = parse_scenario(data, source="prop.toml", base_dir=base)
    except ScenarioError as exc:
        error = exc
    if error is not None:
        assert error.source == "prop.toml"
        assert str(error).startswith("prop.toml: ")
        return
    assert isinstance(sc, Scenario)
    assert 0 < sc.duration_s <= scenario_module.K_MAX_DURATION_S
    assert sc.up or sc.down


_prob = st.floats(min_value=0.0, max_value=1.0)
_small_prob = st.floats(min_value=0.0, max_value=0.5)
_ms = st.one_of(st.integers(min_value=0, max_value=10_000),
                st.floats(min_value=0.0, max_value=1e4))
_positive = st.one_of(st.integers(min_value=1, max_value=10**7),
                      st.floats(min_value=1e-3, max_value=1e7))


@st.composite
def _loss_params(draw: st.DrawFn) -> tuple[dict[str, Any], LossConfig]:
    kind = draw(st.sampled_from(["none", "bernoulli", "gilbert-rb", "gilbert", "markov4"]))
    if kind == "none":
        return {"model": "none"}, NoLoss()
    if kind == "bernoulli":
        rate = draw(_prob)
        return {"model": "bernoulli", "rate": rate}, BernoulliLoss(rate=rate)
    if kind == "gilbert-rb":
        rate = draw(_small_prob)
        burst = draw(st.floats(min_value=1.0, max_value=50.0))
        return ({"model": "gilbert", "rate": rate, "burst": burst},
                GilbertLoss.from_rate_burst(rate, burst))
    if kind == "gilbert":
        params = {"p": draw(_prob), "r": draw(st.floats(min_value=0.01, max_value=1.0))}
        params.update(draw(st.fixed_dictionaries({}, optional={"h": _prob, "k": _prob})))
        return {"model": "gilbert", **params}, GilbertLoss(**params)
    params = {"p13": draw(_small_prob)}
    params.update(draw(st.fixed_dictionaries(
        {}, optional={"p31": _small_prob, "p32": _small_prob, "p23": _prob,
                      "p14": _small_prob})))
    if "p32" in params and "p31" not in params:
        params["p31"] = draw(_small_prob)  # the default 1 - p13 plus p32 may exceed 1
    return {"model": "markov4", **params}, Markov4Loss(**params)


@st.composite
def _valid_links(draw: st.DrawFn, trace_path: str) -> tuple[dict[str, Any], LossConfig | None]:
    """A valid link table and the loss model its ``loss`` entry must become."""
    table: dict[str, Any] = draw(st.fixed_dictionaries(
        {},
        optional={"delay_ms": _ms, "jitter_ms": _ms,
                  "jitter_distribution": st.sampled_from(JITTER_DISTRIBUTIONS),
                  "reorder": st.booleans(), "aqm": st.sampled_from(AQM_SCHEMES),
                  "codel_target_ms": _positive, "codel_interval_ms": _positive,
                  "duplicate": _prob, "down": st.booleans()}))
    loss: LossConfig | None = None
    if draw(st.booleans()):
        table["loss"], loss = draw(_loss_params())
    bottleneck = draw(st.sampled_from(["none", "rate", "trace"]))
    if bottleneck == "rate":
        table["rate_kbps"] = draw(_positive)
    elif bottleneck == "trace":
        table["trace"] = trace_path
    queue = draw(st.sampled_from(["none", "queue_packets", "queue_bytes", "queue_ms"]))
    if queue == "queue_packets":
        table[queue] = draw(st.integers(min_value=1, max_value=10**6))
    elif queue == "queue_bytes":
        table[queue] = draw(st.integers(min_value=1500, max_value=10**9))
    elif queue == "queue_ms":
        table[queue] = draw(_positive)
    return table, loss


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_valid_link_tables_round_trip(small_trace: Path, data: st.DataObject) -> None:
    table, loss = data.draw(_valid_links(small_trace.as_posix()))
    sc = parse_scenario({"name": "rt", "duration_s": 10, "link": table})
    kwargs = {k: v for k, v in table.items() if k not in ("loss", "trace")}
    expected = LinkConfig(trace=load_mahimahi(small_trace) if "trace" in table else None,
                          loss=loss if loss is not None else NoLoss(), **kwargs)
    for cfg in (sc.uplink, sc.downlink):
        assert cfg == expected
        for key, value in kwargs.items():
            got = getattr(cfg, key)
            assert got == value
            # the parser turns integers into floats where the field is a float, nothing else
            assert type(got) is type(value) or (type(value) is int and type(got) is float)
        assert cfg.loss.to_dict() == expected.loss.to_dict()


# ---------------------------------------------------------------------------- docs


def test_docs_mention_every_key() -> None:
    doc = DOC.read_text(encoding="utf-8")
    keys: set[str] = set()
    keys |= known_keys({"name": "t", "duration_s": 1, "zzz": 1})
    keys |= known_keys({"name": "t", "duration_s": 1,
                        "events": [{"at_s": 0, "link": {}, "zzz": 1}]})
    keys |= known_keys({"name": "t", "duration_s": 1, "traffic": {"zzz": {}}})
    keys |= known_keys({"name": "t", "duration_s": 1, "transport": {"zzz": 1}})
    keys |= set(scenario_module._LINK_KEYS)
    keys |= set(scenario_module._LOSS_PARAMS) | {"model"}
    keys |= {p for ps in scenario_module._LOSS_PARAMS.values() for p in ps}
    keys |= set(scenario_module._TRAFFIC_KEYS) | {"deadline_ms", "priority"}
    keys |= {k for ks in scenario_module._TRAFFIC_KEYS.values() for k in ks}
    keys |= {f.name for f in fields(TransportSettings)}
    keys |= set(JITTER_DISTRIBUTIONS) | set(AQM_SCHEMES) | set(RECOVERY_MODES)
    keys |= {"reno", "cubic"}
    missing = sorted(k for k in keys if f"`{k}`" not in doc)
    assert not missing, f"docs/NETSIM.md does not mention {missing}"


def test_docs_mention_every_output_field() -> None:
    doc = DOC.read_text(encoding="utf-8")
    link_fields = set(LinkStats().summary(end=1.0))
    channel_fields = set(ChannelRecorder(deadline_ms=100).summary(sent=1, duration_s=1.0))
    channel_fields |= {"on_time", "sent_bytes", "not_sent"}
    top = {"scenario", "source", "seed", "duration_s", "simulated_s", "wall_s",
           "realtime_factor", "transport", "links", "channels", "session", "steps", "engine",
           "pcap"}
    probe = {"packets", "rate_pps", "size_bytes"}
    names = link_fields | channel_fields | top | probe | {"p50", "p95", "p99"}
    missing = sorted(k for k in names if f"`{k}" not in doc and f"{k}`" not in doc)
    assert not missing, f"docs/NETSIM.md does not describe {missing}"
    for suffix in ("uplink-in", "uplink-out", "downlink-in", "downlink-out"):
        assert f"PREFIX-{suffix}.pcap" in doc
    for link in ("NETSIM_RELAY.md", "NETSIM_KERNEL.md"):
        assert f"({link})" in doc


def test_docs_formulas_match_the_code() -> None:
    doc = DOC.read_text(encoding="utf-8")
    assert "r = 1 / burst, p = rate · r / (1 − rate)" in doc  # noqa: RUF001
    loss = GilbertLoss.from_rate_burst(0.05, 4)
    assert f"p ≈ {loss.p:.5f}" in doc
    assert math.isclose(loss.r, 0.25)


def test_docs_example_parses() -> None:
    doc = DOC.read_text(encoding="utf-8")
    m = re.search(r"```toml\n(.*?)```", doc, re.S)
    assert m is not None
    sc = parse_scenario(tomllib.loads(m.group(1)), source="NETSIM.md", base_dir=SCENARIOS)
    assert sc.downlink.trace is not None
    assert sc.link_at("uplink", 21).down
    assert not sc.link_at("uplink", 22).down
    assert sc.link_at("uplink", 22).rate_kbps == 1500.0
