"""The local fan-out relay of producer cameras, over real loopback sockets."""

from __future__ import annotations

import socket

from drivers.cameras.relay import RAW_MAX_BYTES, TS_MAX_BYTES, TS_PACKET, StreamRelay
from tests.waiting import wait_for


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return sock


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "relay hung up early"
        data += chunk
    return data


def packets(start: int, count: int) -> bytes:
    return b"".join(bytes([0x47, i % 256]) + bytes(TS_PACKET - 2)
                    for i in range(start, start + count))


def test_fan_out_whole_packets_and_hang_up_when_producer_leaves():
    seen = []
    relay = StreamRelay("t", on_data=seen.append)
    relay.start()
    try:
        a, b = connect(relay.serve_port), connect(relay.serve_port)
        wait_for(lambda: relay.consumers == 2, 10, "2 consumer(s)")
        producer = connect(relay.ingest_port)
        data = packets(0, 100)
        producer.sendall(data[:1000])  # not a whole number of packets: the rest waits
        producer.sendall(data[1000:])
        assert recv_exactly(a, len(data)) == data
        assert recv_exactly(b, len(data)) == data
        # a consumer joining now starts at a packet boundary
        c = connect(relay.serve_port)
        wait_for(lambda: relay.consumers == 3, 10, "3 consumer(s)")
        producer.sendall(packets(100, 3))
        got = recv_exactly(c, 3 * TS_PACKET)
        assert got[0] == 0x47 and got[1] == 100
        assert relay.bytes_in == 103 * TS_PACKET == sum(seen)
        # the producer goes away: consumers are hung up on (they restart cleanly)
        producer.close()
        for sock in (a, b, c):
            sock.settimeout(5)
            while sock.recv(65536):
                pass
        wait_for(lambda: relay.consumers == 0, 10, "0 consumer(s)")
        # a new producer is served to new consumers on the same ports
        d = connect(relay.serve_port)
        wait_for(lambda: relay.consumers == 1, 10, "1 consumer(s)")
        producer = connect(relay.ingest_port)
        producer.sendall(packets(7, 2))
        assert recv_exactly(d, 2 * TS_PACKET)[1] == 7
        assert relay.producers == 2
        producer.close()
    finally:
        relay.close()


def test_a_consumer_that_does_not_read_is_dropped_not_waited_for():
    relay = StreamRelay("slow", max_bytes=4 * 64 * TS_PACKET)
    relay.start()
    try:
        stuck = socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect(("127.0.0.1", relay.serve_port))
        fast = connect(relay.serve_port)
        wait_for(lambda: relay.consumers == 2, 10, "2 consumer(s)")
        producer = connect(relay.ingest_port)
        chunk = packets(0, 64)
        for _ in range(4000):  # up to 48 MB: far more than the socket buffers of `stuck`
            producer.sendall(chunk)
            assert len(recv_exactly(fast, len(chunk))) == len(chunk)  # never held back
            if relay.dropped_consumers:
                break
        wait_for(lambda: relay.dropped_consumers == 1, 10, "the slow consumer dropped")
        assert relay.consumers == 1
        producer.close()
        stuck.close()
    finally:
        relay.close()


def test_raw_frames_are_relayed_whole():
    frame = 160 * 120 * 3 // 2
    relay = StreamRelay("raw", unit=frame)
    relay.start()
    try:
        producer = connect(relay.ingest_port)
        producer.sendall(bytes([1]) * frame)  # before any consumer: gone
        wait_for(lambda: relay.bytes_in >= frame, 10, "the relay to read the first frame")
        consumer = connect(relay.serve_port)
        wait_for(lambda: relay.consumers == 1, 10, "1 consumer(s)")
        producer.sendall(bytes([2]) * (frame // 2))
        producer.sendall(bytes([2]) * (frame - frame // 2) + bytes([3]) * frame)
        assert recv_exactly(consumer, 2 * frame) == bytes([2]) * frame + bytes([3]) * frame
        producer.close()
    finally:
        relay.close()


def stuck_consumer(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    return sock


def test_raw_frames_a_stalled_consumer_holds_a_few_mb_and_stays_aligned():
    """The limit is in bytes: 250 frames of 640x360 to a consumer that does not read once
    held 88 MB (256 frames queued); now whole frames are skipped past 4 MiB."""
    frame = 640 * 360 * 3 // 2
    relay = StreamRelay("raw", unit=frame)
    assert relay.max_bytes == RAW_MAX_BYTES
    relay.start()
    try:
        stuck = stuck_consumer(relay.serve_port)
        fast = connect(relay.serve_port)
        wait_for(lambda: relay.consumers == 2, 10, "2 consumer(s)")
        producer = connect(relay.ingest_port)
        most = 0
        for i in range(250):
            producer.sendall(bytes([i % 256]) * frame)
            assert recv_exactly(fast, frame) == bytes([i % 256]) * frame  # never held back
            with relay._lock:
                most = max([most] + [c.queued for c in relay._consumers])
        assert most <= RAW_MAX_BYTES
        assert relay.skipped_frames > 200 and relay.dropped_consumers == 0
        assert relay.health()["skipped_frames"] == relay.skipped_frames
        # the stalled consumer reads again: what it gets is whole frames, in order
        stuck.settimeout(5)
        last = -1
        for _ in range(RAW_MAX_BYTES // frame):
            block = recv_exactly(stuck, frame)
            assert block == bytes([block[0]]) * frame
            assert block[0] > last
            last = block[0]
        producer.close()
        stuck.close()
    finally:
        relay.close()


def test_main_stream_consumer_paused_a_few_seconds_is_kept():
    """6 MB (6 s at 8 Mbit/s) behind is within the byte limit: a recorder held up by a
    slow disk is not dropped (it was, past 256 chunks) and gets every byte."""
    relay = StreamRelay("main")
    assert relay.max_bytes == TS_MAX_BYTES
    relay.start()
    try:
        paused = stuck_consumer(relay.serve_port)
        wait_for(lambda: relay.consumers == 1, 10, "1 consumer(s)")
        producer = connect(relay.ingest_port)
        chunk = packets(0, 64)
        count = 6_000_000 // len(chunk)
        for _ in range(count):
            producer.sendall(chunk)
        paused.settimeout(5)
        got = recv_exactly(paused, count * len(chunk))
        assert got == chunk * count
        assert relay.dropped_consumers == 0
        producer.close()
        paused.close()
    finally:
        relay.close()
