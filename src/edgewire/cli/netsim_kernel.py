"""``edgewire netsim netem up|down``: the kernel backend from the command line.

``up`` creates two network namespaces joined by a veth pair and shapes both directions with
netem and tbf (see docs/NETSIM_KERNEL.md); the link stays until ``down`` removes it, or, with
``--hold``, until Ctrl-C or SIGTERM. Errors are :class:`~edgewire.errors.EdgewireError`
subclasses, which ``edgewire``'s main prints.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from types import FrameType
from typing import Any

from edgewire.netsim.config import (
    JITTER_DISTRIBUTIONS,
    BernoulliLoss,
    GilbertLoss,
    LossConfig,
    Markov4Loss,
    NoLoss,
)
from edgewire.netsim.kernel import NetemLink, NetemSpec, teardown

__all__ = ["add_netem_parser", "run_netem", "spec_from_args"]

_HOLD_SLEEP_S = 3600.0  # seconds; signals end the wait


def _probability(text: str) -> float:
    """A probability as 0.01 or 1%."""
    try:
        value = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a probability: {text!r} (use 0.01 or 1%)") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"probability out of [0, 1]: {text!r}")
    return value


def _probabilities(low: int, high: int) -> Any:
    def parse(text: str) -> list[float]:
        values = [_probability(part.strip()) for part in text.split(",")]
        if not low <= len(values) <= high:
            raise argparse.ArgumentTypeError(f"expected {low} to {high} comma-separated "
                                             f"probabilities, got {text!r}")
        return values
    return parse


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {text!r}")
    return value


def add_netem_parser(subparsers: Any) -> None:
    """Add ``netem`` (with ``up`` and ``down``) to an argparse subparsers object."""
    netem = subparsers.add_parser(
        "netem", help="kernel backend: two network namespaces joined by veth, netem and tbf "
                      "(needs root)",
        description="Build a real link in the kernel: network namespaces PREFIX-a and "
                    "PREFIX-b joined by a veth pair, shaped with netem (delay, jitter, loss, "
                    "duplication, reordering) and tbf (rate). Needs root; without netem in "
                    "the kernel only rate limits work. No root? Use `edgewire netsim run` or "
                    "`edgewire netsim relay`.")
    sub = netem.add_subparsers(dest="netem_command", required=True)

    up = sub.add_parser("up", help="create the namespaces, veth pair and qdiscs")
    up.add_argument("--name", default="ew", metavar="PREFIX",
                    help="names: namespaces PREFIX-a/-b, interfaces PREFIX-va/-vb (default ew)")
    up.add_argument("--addr-a", default="10.77.0.1/24", help="address of side a (CIDR)")
    up.add_argument("--addr-b", default="10.77.0.2/24", help="address of side b (CIDR)")
    up.add_argument("--delay-ms", type=_non_negative, default=0.0, help="one-way delay")
    up.add_argument("--jitter-ms", type=_non_negative, default=0.0,
                    help="delay variation (+-jitter for uniform, sigma for normal)")
    up.add_argument("--distribution", choices=JITTER_DISTRIBUTIONS, default="uniform",
                    help="jitter distribution (non-uniform ones need iproute2's tables)")
    up.add_argument("--delay-correlation", type=_probability, default=0.0,
                    help="correlation of successive jitter draws")
    up.add_argument("--jitter-reorders", action="store_true",
                    help="let jitter reorder packets (netem's default; edgewire keeps order)")
    loss = up.add_mutually_exclusive_group()
    loss.add_argument("--loss", type=_probability, metavar="PROB",
                      help="independent (Bernoulli) loss, e.g. 0.02 or 2%%")
    loss.add_argument("--gilbert", type=_probabilities(2, 4), metavar="P,R[,H,K]",
                      help="Gilbert-Elliott loss: P(good->bad), P(bad->good), "
                           "P(delivered|bad) (default 0), P(delivered|good) (default 1)")
    loss.add_argument("--loss-state", type=_probabilities(1, 5), metavar="P13[,P31,P32,P23,P14]",
                      help="netem's 4-state Markov loss model")
    up.add_argument("--duplicate", type=_probability, default=0.0, metavar="PROB",
                    help="probability that a packet is sent twice")
    up.add_argument("--reorder", type=_probability, default=0.0, metavar="PROB",
                    help="probability that a packet skips the delay (needs --delay-ms)")
    up.add_argument("--reorder-correlation", type=_probability, default=0.0, metavar="PROB")
    up.add_argument("--reorder-gap", type=_positive_int, default=None, metavar="N",
                    help="only every N-th packet may be reordered")
    up.add_argument("--rate-kbps", type=_non_negative, default=None,
                    help="rate limit with tbf (kbit/s)")
    queue = up.add_mutually_exclusive_group()
    queue.add_argument("--queue-packets", type=_positive_int, default=None,
                       help="tbf queue in full-size packets (default 1000)")
    queue.add_argument("--queue-bytes", type=_positive_int, default=None,
                       help="tbf queue in bytes")
    up.add_argument("--limit-packets", type=_positive_int, default=1000,
                    help="netem's queue of packets waiting out their delay (default 1000)")
    up.add_argument("--seed", type=int, default=None,
                    help="seed netem's random numbers (kernels since 6.6; b -> a uses seed+1)")
    up.add_argument("--one-way", action="store_true",
                    help="shape only a -> b (b -> a stays unshaped)")
    up.add_argument("--hold", action="store_true",
                    help="stay in the foreground and remove the link on Ctrl-C or SIGTERM")

    down = sub.add_parser("down", help="remove the namespaces (and everything in them)")
    down.add_argument("--name", default="ew", metavar="PREFIX")


def _loss_from_args(args: argparse.Namespace) -> LossConfig:
    if args.loss is not None:
        return BernoulliLoss(rate=args.loss)
    if args.gilbert is not None:
        p, r, *rest = args.gilbert
        h = rest[0] if len(rest) > 0 else 0.0
        k = rest[1] if len(rest) > 1 else 1.0
        return GilbertLoss(p=p, r=r, h=h, k=k)
    if args.loss_state is not None:
        names = ("p13", "p31", "p32", "p23", "p14")
        return Markov4Loss(**dict(zip(names, args.loss_state, strict=False)))
    return NoLoss()


def spec_from_args(args: argparse.Namespace) -> NetemSpec:
    """The a -> b :class:`NetemSpec` described by ``up``'s options."""
    return NetemSpec(
        delay_ms=args.delay_ms,
        jitter_ms=args.jitter_ms,
        delay_correlation=args.delay_correlation,
        distribution=args.distribution,
        jitter_reorders=args.jitter_reorders,
        loss=_loss_from_args(args),
        duplicate=args.duplicate,
        reorder=args.reorder,
        reorder_correlation=args.reorder_correlation,
        reorder_gap=args.reorder_gap or 0,
        limit_packets=args.limit_packets,
        rate_kbps=args.rate_kbps,
        queue_packets=args.queue_packets,
        queue_bytes=args.queue_bytes,
        seed=args.seed,
    )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _print_link(link: NetemLink, *, hold: bool) -> None:
    print(f"edgewire netsim netem: link {link.name!r} is up")
    for line in link.describe():
        print(f"  {line}")
    print(f"run a command inside:   ip netns exec {link.ns_a} COMMAND   "
          f"(or {link.ns_b}; e.g. ip netns exec {link.ns_b} ping {link.addr_a})")
    if hold:
        print("Ctrl-C or SIGTERM removes the link")
    else:
        print(f"remove it:              edgewire netsim netem down --name {link.name}")
    sys.stdout.flush()


def run_netem(args: argparse.Namespace) -> int:
    """Run ``netem up`` or ``netem down``; returns the exit status. EdgewireError subclasses
    (KernelBackendError, LocalProtocolError) propagate with their explanation."""
    if args.netem_command == "down":
        removed = teardown(args.name)
        if removed:
            print(f"edgewire netsim netem: removed {', '.join(sorted(removed))}")
        else:
            print(f"edgewire netsim netem: nothing to remove for {args.name!r}")
        return 0
    spec = spec_from_args(args)
    link = NetemLink(spec, NetemSpec() if args.one_way else None, name=args.name,
                     addr_a=args.addr_a, addr_b=args.addr_b)
    if not args.hold:
        link.up()
        _print_link(link, hold=False)
        return 0
    link.up()
    # SIGTERM becomes Ctrl-C only now: pyroute2 stops its forked helpers with SIGTERM while
    # the link is being built, and they must not run our handler
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        _print_link(link, hold=True)
        while True:
            time.sleep(_HOLD_SLEEP_S)
    except KeyboardInterrupt:
        link.down()
        print(f"edgewire netsim netem: removed link {link.name!r}")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        link.down()
