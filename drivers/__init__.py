"""Hardware drivers: cameras (RTSP, USB, Pi CSI, Jetson CSI), GPIO devices, platform sensors.

Drivers know about hardware and nothing else: they import no other Ronda package.
"""
