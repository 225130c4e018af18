#!/usr/bin/python3
"""serve_load.py - load generator for perf/serve.sh: keep-alive HTTP over TCP or a Unix socket.
  serve_load.py start HOST:PORT LOG CMD...     start CMD (output to LOG), time from the exec to
                                              the first 200 from /health; print "PID MS"
  serve_load.py latency TARGET N              N sequential max_tokens=1 completions on one
                                              keep-alive connection; print p50 and p99 in ms
  serve_load.py throughput TARGET C N TOKENS  C concurrent clients, N requests each of TOKENS
                                              tokens (greedy); print aggregate generated tok/s"""
import http.client, json, os, socket, subprocess, sys, threading, time

class UnixConn(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.path = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)

MODEL = os.environ.get("TFAB_LOAD_MODEL", "tfab-tiny-f16")  # the model name (file stem)

def conn(target):
    if target.startswith("unix:"):
        return UnixConn(target[5:])
    host, port = target.replace("http://", "").split(":")
    c = http.client.HTTPConnection(host, int(port))
    return c

def post(c, body):
    c.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    if r.status != 200:
        raise SystemExit("HTTP %d: %s" % (r.status, data[:200]))
    return json.loads(data)

mode = sys.argv[1]
if mode == "start":
    log = open(sys.argv[3], "wb")
    t0 = time.perf_counter()
    p = subprocess.Popen(sys.argv[4:], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    while True:
        if p.poll() is not None:
            raise SystemExit("the server exited with %d" % p.returncode)
        try:
            c = conn(sys.argv[2]); c.timeout = 1
            c.request("GET", "/health"); r = c.getresponse(); r.read()
            if r.status == 200:
                break
        except (OSError, http.client.HTTPException, ValueError):
            pass
        time.sleep(0.0005)
    print("%d %.1f" % (p.pid, (time.perf_counter() - t0) * 1e3))
elif mode == "latency":
    c, n, lat = conn(sys.argv[2]), int(sys.argv[3]), []
    body = {"model": MODEL, "prompt": "Hi", "max_tokens": 1, "temperature": 0}
    for i in range(n + 10):
        t = time.perf_counter()
        post(c, body)
        if i >= 10:  # warm-up excluded
            lat.append((time.perf_counter() - t) * 1e3)
    lat.sort()
    print("%.3f %.3f" % (lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]))
elif mode == "throughput":
    target, cc, n, tokens = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    total = [0] * cc
    def run(k):
        c = conn(target)
        for i in range(n):
            r = post(c, {"model": MODEL, "prompt": "Once upon a time, in a town %d," % (k * 1000 + i),
                         "max_tokens": tokens, "temperature": 0})
            total[k] += r["usage"]["completion_tokens"]
    th = [threading.Thread(target=run, args=(k,)) for k in range(cc)]
    t0 = time.perf_counter()
    for t in th: t.start()
    for t in th: t.join()
    print("%.1f" % (sum(total) / (time.perf_counter() - t0)))
