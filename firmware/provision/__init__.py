"""Provisioning a node: first boot from the boot partition, `ronda doctor`, updates.

Everything here runs outside the daemon (as root, from systemd oneshots or a technician's
shell) and uses only plain tools (ffprobe, paho-mqtt, tflite_runtime, gpiozero, os.statvfs)
so that it keeps working while the daemon's own areas change. See docs/image.md.
"""
