"""`ronda fleet-sim`: many simulated nodes on one broker, checked for loss and latency.

A development tool (the simulator is `central/devtools/fleet_sim.py`); not on a node."""

from __future__ import annotations

import argparse
import sys

import psutil

from central.devtools.fleet_sim import FleetResult, FleetSim
from central.mqtt_client import add_client_arguments, client_options
from central.tools import password
from devtools.broker import LocalBroker
from firmware.commands import formatter


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fleet-sim", formatter_class=formatter,
        description="Start N simulated nodes (each a real MQTT client with a last will,\n"
                    "online/offline status, retained health and random person events with\n"
                    "its own seq) and a checker subscribed to all of them. At the end a\n"
                    "fraction of the nodes 'lose power' (socket closed, no DISCONNECT) and\n"
                    "their last will must say offline. Exit 0 only with zero loss, no seq\n"
                    "gap and every will seen.\n\n"
                    "examples:\n"
                    "  ronda fleet-sim --local --nodes 1000 --duration 20\n"
                    "      (starts its own Mosquitto on a free loopback port; reports its CPU)\n"
                    "  ronda fleet-sim --broker mqtt://10.0.0.5:1883 --nodes 200 --rate 1")
    p.add_argument("--nodes", "-n", type=int, default=100, help="simulated nodes (default 100)")
    p.add_argument("--duration", type=float, default=10.0,
                   help="seconds of events (default 10)")
    p.add_argument("--rate", type=float, default=0.2,
                   help="events per second per node, Poisson (default 0.2)")
    p.add_argument("--crash", type=float, default=0.1,
                   help="fraction of nodes killed without DISCONNECT at the end (default 0.1)")
    p.add_argument("--local", action="store_true",
                   help="run against a Mosquitto started for this run (ignores --broker)")
    p.add_argument("--seed", type=int, help="random seed, for repeatable runs")
    add_client_arguments(p)
    p.set_defaults(func=fleet_sim)


def report(result: FleetResult, broker_cpu_s: float | None = None) -> list[str]:
    """Human-readable result lines."""
    lines = [
        f"nodes       {result.connected}/{result.nodes} connected, "
        f"{result.online_seen} announced online",
        f"events      {result.sent} sent, {result.acked} acknowledged, "
        f"{result.received} received, {result.lost} lost, {result.duplicates} duplicates, "
        f"{result.gaps} seq gaps, {result.out_of_order} out of order",
        f"latency     p50 {_ms(result.latency_ms(50))}  p99 {_ms(result.latency_ms(99))}  "
        f"max {_ms(result.latency_ms(100))}",
        f"last wills  {result.wills_seen}/{result.crashed} crashed nodes announced offline",
        f"cost        {result.duration_s:.1f} s, simulator CPU {result.sim_cpu_s:.2f} s"
        + (f", broker CPU {broker_cpu_s:.2f} s" if broker_cpu_s is not None else ""),
        "result      " + ("OK" if result.ok else "FAILED"),
    ]
    return lines


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def run_sim(args: argparse.Namespace, broker_url: str) -> FleetResult:
    opts = client_options(args, password(args))
    opts.broker = broker_url
    return FleetSim(opts, nodes=args.nodes, prefix=args.prefix, rate_per_node=args.rate,
                    duration_s=args.duration, crash_fraction=args.crash, seed=args.seed).run()


def fleet_sim(args: argparse.Namespace) -> int:
    broker_cpu = None
    try:
        if args.local:
            with LocalBroker() as broker:
                proc = psutil.Process(broker.proc.pid)
                before = sum(proc.cpu_times()[:2])
                result = run_sim(args, broker.url)
                broker_cpu = sum(proc.cpu_times()[:2]) - before
        else:
            result = run_sim(args, args.broker)
    except (OSError, ConnectionError) as exc:
        print(f"ronda fleet-sim: {exc}", file=sys.stderr)
        return 4
    for line in report(result, broker_cpu):
        print(line)
    return 0 if result.ok else 1
