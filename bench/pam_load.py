#!/usr/bin/env python3
"""Logins per second through pam_otpd.so itself: real libpam (under pam_wrapper, so the
service file is ours), called from many threads of one process, against a real otpd.

    python3 bench/pam_load.py --module target/release/libpam_otpd.so \
        --otpd target/release/otpd --threads 1,8,32 --duration 5

Each thread logs in its own accounts in turn (PIN + the account's next HOTP code), so every
login should be accepted; a thread's pam_authenticate blocks until the daemon answers, so
the window is the number of threads. ctypes releases the GIL around each libpam call.
"""
import argparse, base64, ctypes, hashlib, hmac, json, os, signal, struct, subprocess, sys
import tempfile, threading, time
from ctypes import (CFUNCTYPE, POINTER, Structure, byref, c_char_p, c_int, c_void_p)

PAM_WRAPPER = "/usr/lib/x86_64-linux-gnu/libpam_wrapper.so"
SECRET = b"12345678901234567890"
PIN = "1234"


def hotp(counter):
    mac = hmac.new(SECRET, struct.pack(">Q", counter), hashlib.sha1).digest()
    o = mac[-1] & 0x0F
    return "%06d" % ((struct.unpack(">I", mac[o:o + 4])[0] & 0x7FFFFFFF) % 1_000_000)


class PamMessage(Structure):
    _fields_ = [("msg_style", c_int), ("msg", c_char_p)]


class PamResponse(Structure):
    _fields_ = [("resp", c_void_p), ("resp_retcode", c_int)]


CONV = CFUNCTYPE(c_int, c_int, POINTER(POINTER(PamMessage)), POINTER(POINTER(PamResponse)),
                 c_void_p)


class PamConv(Structure):
    _fields_ = [("conv", CONV), ("appdata_ptr", c_void_p)]


def load(args):
    """Runs in the child that has pam_wrapper preloaded."""
    libc = ctypes.CDLL(None)
    libc.calloc.restype = c_void_p
    libc.calloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
    libc.strdup.restype = c_void_p
    libc.strdup.argtypes = [c_char_p]
    # Through the global namespace, where the preloaded pam_wrapper's pam_start comes first:
    # a handle on libpam itself would bypass it (and read /etc/pam.d).
    ctypes.CDLL("libpam.so.0", mode=ctypes.RTLD_GLOBAL)
    pam = ctypes.CDLL(None)
    pam.pam_start.argtypes = [c_char_p, c_char_p, POINTER(PamConv), POINTER(c_void_p)]
    pam.pam_authenticate.argtypes = [c_void_p, c_int]
    pam.pam_end.argtypes = [c_void_p, c_int]
    local = threading.local()

    @CONV
    def conv(n, msgs, resp, _data):
        # Every prompt gets the password: the module asks once (PIN + code).
        arr = libc.calloc(n, ctypes.sizeof(PamResponse))
        rs = ctypes.cast(arr, POINTER(PamResponse))
        for i in range(n):
            rs[i].resp = libc.strdup(local.password)
            rs[i].resp_retcode = 0
        resp[0] = rs
        return 0

    pamconv = PamConv(conv, None)
    counters = [0] * args.accounts
    if max(int(t) for t in args.threads.split(",")) > args.accounts:
        sys.exit("--accounts must be at least the largest --threads")
    results = []
    for threads in [int(t) for t in args.threads.split(",")]:
        stop = threading.Event()
        measuring = threading.Event()
        counts = [[0, 0, []] for _ in range(threads)]
        codes = {}

        def worker(t):
            # This thread's own accounts, in turn: no account is logged in twice at once.
            mine = range(t, args.accounts, threads)
            i = 0
            while not stop.is_set():
                user = mine[i % len(mine)]
                i += 1
                local.password = (PIN + hotp(counters[user])).encode()
                counters[user] += 1
                h = c_void_p()
                start = time.perf_counter()
                rc = pam.pam_start(b"vpn", f"u{user}".encode(), byref(pamconv), byref(h))
                if rc == 0:
                    rc = pam.pam_authenticate(h, 0)
                    pam.pam_end(h, rc)
                took = time.perf_counter() - start
                if measuring.is_set() and not stop.is_set():
                    c = counts[t]
                    c[0 if rc == 0 else 1] += 1
                    if rc != 0:
                        codes[rc] = codes.get(rc, 0) + 1
                    c[2].append(took)

        ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
        for t in ts:
            t.start()
        time.sleep(args.warmup)
        measuring.set()
        cpu0 = daemon_cpu(args.pid)
        t0 = time.perf_counter()
        time.sleep(args.duration)
        stop.set()
        secs = time.perf_counter() - t0
        cpu = daemon_cpu(args.pid) - cpu0
        for t in ts:
            t.join()
        ok = sum(c[0] for c in counts)
        failed = sum(c[1] for c in counts)
        lat = sorted(x for c in counts for x in c[2])
        p = lambda q: lat[min(len(lat) - 1, int(len(lat) * q))] * 1e3 if lat else 0.0
        results.append({"threads": threads, "accepts_per_s": ok / secs, "accepted": ok,
                        "failed": failed, "failure_codes": codes, "p50_ms": p(0.5), "p99_ms": p(0.99),
                        "daemon_cpu_us_per_login": cpu / max(1, ok + failed) * 1e6})
    print(json.dumps(results))


def daemon_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--module", required=True)
    ap.add_argument("--otpd", required=True)
    ap.add_argument("--threads", default="1,8,32")
    ap.add_argument("--accounts", type=int, default=2000)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--pid", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return load(args)
    for f in (PAM_WRAPPER, args.module, args.otpd):
        if not os.path.isfile(f):
            sys.exit(f"{f} is missing (pam_wrapper: the Debian package libpam-wrapper)")
    with tempfile.TemporaryDirectory(prefix="otpd-pam-bench.") as work:
        conf = os.path.join(work, "otpd.toml")
        sock = os.path.join(work, "otpd.sock")
        with open(conf, "w") as f:
            f.write(f'data_dir = "{work}/data"\n[log]\nlevel = "warn,otpd::daemon=info"\n'
                    f'[socket]\npath = "{sock}"\nallow_uids = [{os.getuid()}]\n'
                    f'max_connections = 1024\n[radius]\nlisten = []\n')
        otpd = lambda *a, **kw: subprocess.run([args.otpd, "--config", conf, *a], check=True,
                                               stdout=subprocess.DEVNULL, **kw)
        otpd("init")
        lines = "".join(json.dumps({"user": f"u{i}", "pin": PIN, "level": "everywhere",
                                    "tokens": [{"type": "hotp", "counter": 0,
                                                "secret": base64.b32encode(SECRET).decode()}]})
                        + "\n" for i in range(args.accounts))
        accounts = os.path.join(work, "accounts.jsonl")
        with open(accounts, "w") as f:
            f.write(lines)
        otpd("user", "import", accounts)
        log = open(os.path.join(work, "otpd.log"), "w")
        daemon = subprocess.Popen([args.otpd, "--config", conf, "serve"], stdout=log,
                                  stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 30
            while "otpd ready" not in open(os.path.join(work, "otpd.log")).read():
                if daemon.poll() is not None or time.time() > deadline:
                    sys.exit("otpd did not start:\n" + open(os.path.join(work, "otpd.log")).read())
                time.sleep(0.1)
            pamd = os.path.join(work, "pam.d")
            os.mkdir(pamd)
            with open(os.path.join(pamd, "vpn"), "w") as f:
                f.write(f"auth required {os.path.abspath(args.module)} socket={sock}\n")
            # libpam wants a fallback service; nothing but "vpn" is asked for here.
            with open(os.path.join(pamd, "other"), "w") as f:
                f.write("auth required pam_deny.so\n")
            env = dict(os.environ, LD_PRELOAD=PAM_WRAPPER, PAM_WRAPPER="1",
                       PAM_WRAPPER_SERVICE_DIR=pamd,
                       PAM_WRAPPER_DEBUGLEVEL=os.environ.get("PAM_WRAPPER_DEBUGLEVEL", "0"))
            out = subprocess.run([sys.executable, __file__, "--child", "--pid", str(daemon.pid),
                                  "--module", args.module, "--otpd", args.otpd,
                                  "--threads", args.threads, "--accounts", str(args.accounts),
                                  "--duration", str(args.duration), "--warmup",
                                  str(args.warmup)], env=env, check=True, capture_output=True,
                                 text=True)
            sys.stderr.write(out.stderr[-int(os.environ.get("PAM_BENCH_STDERR", "2000")):])
            rows = json.loads(out.stdout.strip().splitlines()[-1])
            if any(r["failed"] for r in rows):
                # Why, from the daemon's audit (reasons only; no secrets are in it).
                audit = subprocess.run([args.otpd, "--config", conf, "audit", "--json"],
                                       capture_output=True, text=True).stdout
                print("failed logins; the last audit records:", file=sys.stderr)
                print("\n".join(audit.strip().splitlines()[-3:]), file=sys.stderr)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
    print("| threads | accepts/s | failed | p50 ms | p99 ms | daemon CPU µs/login |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['threads']} | {r['accepts_per_s']:,.0f} | {r['failed']} {r['failure_codes'] or ''} | "
              f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['daemon_cpu_us_per_login']:.0f} |")


if __name__ == "__main__":
    main()
