"""Development and test tools, never on a node (its wheel leaves this package out):
`ronda demo`, `ronda fleet-sim` and `ronda dev-node` (`devtools/commands/`), local
stand-ins for the city's infrastructure (a Mosquitto broker on a free loopback port, an
RTSP test camera, media servers, a synthetic scene) and `python -m devtools.recorder`.
"""
