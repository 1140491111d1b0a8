"""A raw MQTT 3.1.1 client for the partition test (run inside a network namespace with
`ip netns exec`): connects with clean session 0, optionally subscribes at QoS 1, and writes
what happens to a file, a line an event, as it happens:
`connack <session present> <return code>`, `subscribed`, `message <payload> <dup>`, `closed`.
Every QoS 1 message is acknowledged.

usage: replicas_client.py HOST PORT CLIENT_ID OUT_FILE [TOPIC]
"""

import socket
import sys


def remaining(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(s):
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def packet(first, body):
    return bytes([first]) + remaining(len(body)) + body


def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def read_packet(sock):
    first = read_exact(sock, 1)[0]
    n, mult = 0, 1
    while True:
        b = read_exact(sock, 1)[0]
        n += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            break
    return first, read_exact(sock, n)


def main():
    host, port, client_id, out_path = sys.argv[1:5]
    topic = sys.argv[5] if len(sys.argv) > 5 else None
    out = open(out_path, "a", buffering=1)
    sock = socket.create_connection((host, int(port)))
    # CONNECT: MQTT 3.1.1, clean session 0, keep alive 0.
    sock.sendall(packet(0x10, utf8("MQTT") + bytes([4, 0x00, 0, 0]) + utf8(client_id)))
    try:
        first, body = read_packet(sock)
        out.write(f"connack {body[0] & 1} {body[1]}\n")
        if body[1] != 0:
            return
        if topic:
            sock.sendall(packet(0x82, (1).to_bytes(2, "big") + utf8(topic) + bytes([1])))
        while True:
            first, body = read_packet(sock)
            kind = first >> 4
            if kind == 9:
                out.write("subscribed\n")
            elif kind == 3:
                qos = (first >> 1) & 3
                tlen = int.from_bytes(body[:2], "big")
                rest = body[2 + tlen:]
                if qos:
                    pid, rest = rest[:2], rest[2:]
                    sock.sendall(packet(0x40, pid))
                dup = (first >> 3) & 1
                out.write(f"message {rest.decode()} {dup}\n")
    except (EOFError, OSError):
        pass
    out.write("closed\n")


main()
