#!/usr/bin/python3
"""client.py - raw HTTP clients for the tfab serve tests that curl cannot play.
  client.py disconnect HOST PORT   stream a long completion, read the first token chunk, hang up
  client.py hangup HOST PORT       ask for a long whole (unstreamed) answer, hang up after 20 ms
  client.py stall HOST PORT FILE   stream a long completion with a tiny receive buffer and read
                                   nothing until FILE exists (at most 120 s); then report how the
                                   server ended it"""
import os
import socket, sys, time

def request(host, port, rcvbuf=None, stream=True):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect((host, int(port)))
    body = b'{"model":"tfab-tiny-f16","prompt":"Once upon a time","max_tokens":240,"temperature":0,"stream":%s}' % (b"true" if stream else b"false")
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    return s

mode = sys.argv[1]
if mode == "disconnect":
    s = request(sys.argv[2], sys.argv[3])
    got = b""
    while b'"text":"' not in got:
        d = s.recv(4096)
        if not d:
            sys.exit("closed before the first token")
        got += d
    s.close()
    print("hung up after %d bytes" % len(got))
elif mode == "hangup":
    s = request(sys.argv[2], sys.argv[3], stream=False)
    time.sleep(0.02)
    s.close()
elif mode == "stall":
    s = request(sys.argv[2], sys.argv[3], rcvbuf=2048)
    for _ in range(12000):
        if os.path.exists(sys.argv[4]):
            break
        time.sleep(0.01)
    # now drain: a canceled stream ends without the final chunk and [DONE]
    s.settimeout(5)
    got = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
    except (socket.timeout, ConnectionResetError):
        pass
    print("done" if b"data: [DONE]" in got else "cut", len(got))
