"""Local stand-ins for the city's infrastructure, used by `ronda demo`, tests and benches:
a Mosquitto broker on a free loopback port, free ports. Nothing here runs on a real node.
"""
