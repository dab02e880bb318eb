# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""HTTP artifact bench: nixie.metal's aiohttp app against nginx, same run, same file.

Both servers run on loopback (nginx with its own temporary configuration,
ours in its own process, as the pxe_server module builds it) and serve one
file of --size MiB at /boot/<mac>/initrd. --clients curl processes download
the whole file at once, writing to /dev/null; a round is timed from the first
curl start to the last curl exit and gives an aggregate MB/s (1 MB = 10^6 B).
Rounds alternate which server goes first; the figure is the median round, the
ratio is ours / nginx (higher is better; the bar is 0.9). Every download's
status and size are checked, and before timing each server must answer
byte ranges (206 with the right bytes) and one whole download with the right
content. Any failure fails the run.

    python bench/http.py                  # 512 MiB x 20 clients x 3 rounds
    python bench/http.py --quick          # 64 MiB x 20 clients x 3 rounds
    python bench/http.py --size 256 --clients 10 --rounds 5 --json /tmp/http.json
"""

from __future__ import annotations

import os
import sys

# This file is named http.py: keep its directory off the front of sys.path so
# that "http" (used here and by aiohttp) is the standard library's package.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != _HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import hashlib  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

sys.path.append(_HERE)
import _common  # noqa: E402

BAR = 0.9
MAC = "52:54:00:be:0c:01"
URL_PATH = "/boot/%s/initrd" % MAC
NAMES = ("nginx", "ours")
DEFAULT_JSON = os.path.join(_common.RESULTS, "http.json")

NGINX_CONF = """\
daemon off;
master_process on;
worker_processes auto;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    sendfile on;
    default_type application/octet-stream;
    access_log {work}/access.log;
    client_body_temp_path {work}/client_body;
    server {{
        listen 127.0.0.1:{port};
        root {work}/www;
    }}
}}
"""


# ------------------------------------------------------------------ servers


def serve_ours(port, path, log_path):
    """Our app in this process, built as the pxe_server module builds it; ends on SIGTERM."""
    _common.use_collection()
    from aiohttp import web
    from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import http as netboot_http
    from ansible_collections.nixie.metal.plugins.module_utils._netboot.state.registry import Registry
    from ansible_collections.nixie.metal.plugins.module_utils._hosts import Host

    logging.basicConfig(filename=log_path, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    registry = Registry([Host("bench01", MAC)])
    app = netboot_http.create_app(registry, {"x86_64-linux": {"kernel": path, "initrd": path}}, run_id="bench")

    async def main():
        runner = netboot_http.create_runner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()
    asyncio.run(main())
    return 0


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def nginx_version(binary):
    out = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False)
    return (out.stderr or out.stdout).strip().rsplit("/", 1)[-1]


def start_nginx(binary, work, port):
    conf = os.path.join(work, "nginx.conf")
    with open(conf, "w", encoding="utf-8") as handle:
        handle.write(NGINX_CONF.format(work=work, port=port))
    return subprocess.Popen([binary, "-p", work + "/", "-c", conf, "-e", os.path.join(work, "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_ours(path, port, work):
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", "--port", str(port),
                             "--file", path, "--log", os.path.join(work, "ours.log")])


def wait_ready(proc, port, name, limit=20.0):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %s before answering" % (name, proc.returncode))
        try:
            status, dummy, dummy2 = request(port, "HEAD", URL_PATH)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("%s did not answer HEAD %s on port %d" % (name, URL_PATH, port))


def stop(proc):
    """End a server we started, by its PID (nginx's master ends its workers on SIGTERM)."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


# ------------------------------------------------------------------ checks


def request(port, method, path, headers=None, body_limit=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        body = response.read(body_limit) if body_limit is not None else response.read()
        return response.status, dict((k.lower(), v) for k, v in response.getheaders()), body
    finally:
        conn.close()


def range_cases(size):
    return [
        ("bytes=0-15", 0, 16),
        ("bytes=1000-1999", 1000, 1000),
        ("bytes=%d-" % (size - 10), size - 10, 10),
        ("bytes=-100", size - 100, 100),
        ("bytes=%d-%d" % (size // 2, size // 2 + 65535), size // 2, 65536),
    ]


def check_ranges(port, path, size):
    """Single byte ranges must come back as 206 with the right bytes and Content-Range."""
    failures = []
    with open(path, "rb") as handle:
        for header, start, length in range_cases(size):
            handle.seek(start)
            want = handle.read(length)
            status, headers, body = request(port, "GET", URL_PATH, {"Range": header})
            expect_cr = "bytes %d-%d/%d" % (start, start + length - 1, size)
            if status != 206 or body != want or headers.get("content-range") != expect_cr:
                failures.append("Range %s: status %d, %d bytes, Content-Range %r (want 206, %d bytes, %r)%s"
                                % (header, status, len(body), headers.get("content-range"), length, expect_cr,
                                   "" if body == want else ", wrong bytes"))
    return failures


def check_whole(port, digest, size):
    """One whole download through http.client: status 200 and the same SHA-256."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", URL_PATH)
        response = conn.getresponse()
        sha, got = hashlib.sha256(), 0
        while True:
            chunk = response.read(1 << 20)
            if not chunk:
                break
            sha.update(chunk)
            got += len(chunk)
    finally:
        conn.close()
    if response.status != 200 or got != size or sha.hexdigest() != digest:
        return ["whole download: status %d, %d bytes, sha256 %s (want 200, %d bytes, %s)"
                % (response.status, got, sha.hexdigest()[:16], size, digest[:16])]
    return []


def served_seq(port):
    """Our registry's event counter (one event per completed GET of the artifact)."""
    status, dummy, body = request(port, "GET", "/api/v1/health")
    return json.loads(body)["seq"] if status == 200 else None


# ------------------------------------------------------------------ load


def curl_round(port, clients, size):
    """``clients`` curl processes download the whole file at once; returns (MB/s, seconds, failures, times)."""
    url = "http://127.0.0.1:%d%s" % (port, URL_PATH)
    cmd = ["curl", "-s", "-S", "--http1.1", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_total}", url]
    started = time.perf_counter()
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for dummy in range(clients)]
    outputs = [proc.communicate() for proc in procs]
    elapsed = time.perf_counter() - started
    failures, times = [], []
    for proc, (out, err) in zip(procs, outputs):
        fields = out.decode().split()
        if proc.returncode != 0 or len(fields) != 3 or fields[0] != "200" or int(fields[1]) != size:
            failures.append("curl rc %d, %r %s" % (proc.returncode, out.decode(), err.decode().strip()[:200]))
        else:
            times.append(float(fields[2]))
    return clients * size / elapsed / 1e6, elapsed, failures, times


# ------------------------------------------------------------------- bench


def make_file(path, size):
    """``size`` bytes of real (not sparse) data: 16 MiB of random bytes, repeated."""
    block = os.urandom(min(size, 16 << 20))
    sha = hashlib.sha256()
    with open(path, "wb") as handle:
        left = size
        while left:
            piece = block[:left]
            handle.write(piece)
            sha.update(piece)
            left -= len(piece)
    os.chmod(path, 0o644)
    return sha.hexdigest()


def bench(args):
    if not shutil.which("curl"):
        sys.exit("curl is missing; install it with: apt-get install -y curl")
    binary = _common.ensure_nginx()
    size = args.size << 20
    work = tempfile.mkdtemp(prefix="nixie-http-bench-")
    os.chmod(work, 0o755)  # nginx workers run as an unprivileged user
    procs = {}
    result = {
        "bench": "http",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([os.path.relpath(sys.executable, _common.REPO) if sys.executable.startswith(_common.REPO + "/")
                             else sys.executable, os.path.relpath(os.path.abspath(__file__), _common.REPO)] + sys.argv[1:]),
        "args": vars(args),
        "size": size,
        "clients": args.clients,
        "rounds": args.rounds,
        "url_path": URL_PATH,
        "unit": "MB/s aggregate (1 MB = 10^6 bytes), median of rounds",
        "bar": BAR,
        "versions": {"nginx": nginx_version(binary), "python": platform.python_version(),
                     "curl": subprocess.run(["curl", "--version"], capture_output=True, text=True, check=False).stdout.split()[1]},
        "nginx_conf": NGINX_CONF.format(work="<tmp>", port="<port>"),
        "cpus": os.cpu_count(),
    }
    try:
        import aiohttp
        result["versions"]["aiohttp"] = aiohttp.__version__
    except ImportError:
        pass
    failures = {name: [] for name in NAMES}
    try:
        path = os.path.join(work, "artifact")
        digest = make_file(path, size)
        os.makedirs(os.path.join(work, "www", "boot", MAC))
        os.link(path, os.path.join(work, "www", "boot", MAC, "initrd"))  # same inode: one page cache for both
        ports = {"nginx": free_port(), "ours": free_port()}
        procs["nginx"] = start_nginx(binary, work, ports["nginx"])
        procs["ours"] = start_ours(path, ports["ours"], work)
        for name in NAMES:
            wait_ready(procs[name], ports[name], name)

        print("file %d MiB, %d clients, %d rounds; nginx %s on :%d, ours on :%d"
              % (args.size, args.clients, args.rounds, result["versions"]["nginx"], ports["nginx"], ports["ours"]))
        for name in NAMES:
            failures[name] += check_ranges(ports[name], path, size)
            failures[name] += check_whole(ports[name], digest, size)
        result["sanity"] = {name: ("ok" if not failures[name] else failures[name]) for name in NAMES}
        print("sanity (byte ranges -> 206 + right bytes, one whole download -> same sha256): %s"
              % ", ".join("%s %s" % (n, "ok" if not failures[n] else "FAILED") for n in NAMES))
        if any(failures.values()):
            for name in NAMES:
                for failure in failures[name]:
                    print("  %s: %s" % (name, failure))
            raise SystemExit(1)

        for name in NAMES:  # warm-up round, not timed
            failures[name] += curl_round(ports[name], args.clients, size)[2]
        seq0 = served_seq(ports["ours"])
        rounds = {name: [] for name in NAMES}
        times = {name: [] for name in NAMES}
        cpu = {name: 0.0 for name in NAMES}
        for number in range(args.rounds):
            for name in NAMES if number % 2 == 0 else tuple(reversed(NAMES)):
                c0 = (_common.tree_cpu(procs[name].pid) or 0.0)
                mbps, elapsed, fails, each = curl_round(ports[name], args.clients, size)
                cpu[name] += (_common.tree_cpu(procs[name].pid) or 0.0) - c0
                rounds[name].append(mbps)
                times[name] += each
                failures[name] += fails
                print("  round %d %-6s %8.0f MB/s  (%.2f s, %d failed)" % (number + 1, name, mbps, elapsed, len(fails)))
        seq1 = served_seq(ports["ours"])
        recorded = None if seq0 is None or seq1 is None else seq1 - seq0
        expected = args.rounds * args.clients
        if recorded != expected:
            failures["ours"].append("registry recorded %r served events for %d downloads" % (recorded, expected))
    finally:
        for proc in procs.values():
            stop(proc)
        if args.keep:
            print("kept %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)

    total_mb = args.rounds * args.clients * size / 1e6
    result["servers"] = {name: {
        "median": statistics.median(rounds[name]),
        "rounds": rounds[name],
        "download_seconds": {"min": min(times[name], default=None), "median": statistics.median(times[name]) if times[name] else None,
                             "max": max(times[name], default=None)},
        "server_cpu_ms_per_mb": 1000 * cpu[name] / total_mb,
    } for name in NAMES}
    result["servers"]["ours"]["served_events"] = recorded
    result["failures"] = failures
    ratio = result["servers"]["ours"]["median"] / result["servers"]["nginx"]["median"]
    result["ratio_ours_over_nginx"] = ratio
    ok = ratio >= BAR and not any(failures.values())
    result["pass"] = ok

    print("%-8s %10s %12s %16s" % ("server", "MB/s", "rounds", "server CPU ms/MB"))
    for name in NAMES:
        info = result["servers"][name]
        print("%-8s %10.0f %12s %16.3f" % (name, info["median"], "/".join("%.0f" % v for v in info["rounds"]),
                                           info["server_cpu_ms_per_mb"]))
    print("ratio ours/nginx %.3f (bar >= %.1f); failed downloads: %s"
          % (ratio, BAR, {n: len(f) for n, f in failures.items()}))
    for name in NAMES:
        for failure in failures[name][:5]:
            print("  %s: %s" % (name, failure))
    out = _common.save_json(os.path.abspath(args.json), result)
    print("result: %s -> %s" % ("PASS" if ok else "FAIL", out))
    return 0 if ok else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, help="file size in MiB (default 512; 64 with --quick)")
    parser.add_argument("--clients", type=int, default=20, help="concurrent curl downloads per round")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per server (order alternates)")
    parser.add_argument("--quick", action="store_true", help="short run for CI: 64 MiB unless --size is given")
    parser.add_argument("--json", default=DEFAULT_JSON, help="result file (default bench/results/http.json)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, nginx.conf)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve_ours(args.port, args.file, args.log)
    if args.size is None:
        args.size = 64 if args.quick else 512
    return bench(args)


if __name__ == "__main__":
    sys.exit(main())
