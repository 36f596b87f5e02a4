"""On-device detection: motion gating, tflite object detection, tracking, zones, tamper."""
