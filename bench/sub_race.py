#!/usr/bin/env python3
"""Issue 15.2's race against any MQTT 3.1.1 broker: client B subscribes to a new topic and
client A, on another connection, publishes to it right after, without waiting for B's SUBACK.
After the SUBACK, A publishes a marker to the same topic; per-publisher order puts the first
message before the marker, so "B missed it" is told without a timer.

    bench/sub_race.py PORT [TRIES] [HOST]

Prints one line: tries and misses. Raw sockets only (no client library between us and the
broker).
"""
import socket
import struct
import sys


def frame(first, body):
    out = bytearray([first])
    n = len(body)
    while True:
        byte = n % 128
        n //= 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            break
    return bytes(out) + body


def string(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def read_exact(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed by the broker")
        out += chunk
    return out


def read_frame(sock):
    first = read_exact(sock, 1)[0]
    length, shift = 0, 0
    while True:
        b = read_exact(sock, 1)[0]
        length |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return first, read_exact(sock, length)


def connect(host, port, client_id):
    s = socket.create_connection((host, port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    body = string("MQTT") + bytes([4, 0x02]) + struct.pack(">H", 60) + string(client_id)
    s.sendall(frame(0x10, body))
    first, _ = read_frame(s)
    assert first == 0x20, "CONNACK expected"
    return s


def main():
    port = int(sys.argv[1])
    tries = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    host = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"
    b = connect(host, port, "race-b")
    a = connect(host, port, "race-a")
    missed = 0
    for i in range(1, tries + 1):
        topic = "race/%d" % i
        sub = struct.pack(">H", i % 65535 + 1) + string(topic) + b"\x00"
        b.sendall(frame(0x82, sub))
        a.sendall(frame(0x30, string(topic) + b"first"))
        got_first = False
        while True:
            first, body = read_frame(b)
            kind = first >> 4
            if kind == 9:
                a.sendall(frame(0x30, string(topic) + b"marker"))
            elif kind == 3 and body.endswith(b"first"):
                got_first = True
            elif kind == 3 and body.endswith(b"marker"):
                break
        if not got_first:
            missed += 1
    print("tries %d missed %d" % (tries, missed))


if __name__ == "__main__":
    main()
