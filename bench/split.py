"""Where a daemon's time went in one window of bench/run.sh, from its /metrics: flushes and
batch sizes of its store, and CPU per login split into receive / decide / commit / send.
Shared by summary.py (SQLite against FreeRADIUS) and run.sh's PostgreSQL summary."""
import statistics


def median(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def f(v, fmt):
    return format(v, fmt) if v is not None else "-"


def split(r):
    """Where one otpd window's time went, from the daemon's metrics over its measured seconds."""
    m = r.get("daemon_metrics")
    if not m:
        return None
    logins = sum(v for k, v in m.items() if k.startswith("otpd_requests_total{"))
    commits = m.get("otpd_store_commit_batch_size_count", 0)
    if logins <= 0 or commits <= 0:
        return None
    def cpu(phase):
        n = m.get(f'otpd_login_cpu_seconds_count{{phase="{phase}"}}', 0)
        return m.get(f'otpd_login_cpu_seconds_sum{{phase="{phase}"}}', 0) * 1e6 / n if n else None
    out = {
        "flushes": commits / logins,
        "writes": m.get("otpd_store_commit_batch_size_sum", 0) / commits,
        "logins_per_commit": logins / commits,
        "commit_ms": m.get("otpd_store_commit_duration_seconds_sum", 0) * 1e3 / commits,
        "receive": cpu("receive"), "decide": cpu("decide"), "send": cpu("send"),
    }
    per_commit = cpu("commit")
    out["commit"] = per_commit * commits / logins if per_commit is not None else None
    total = r.get("daemon_cpu_us_per_req")
    parts = [out[p] for p in ("receive", "decide", "commit", "send")]
    out["other"] = total - sum(parts) if total is not None and None not in parts else None
    out["total"] = total
    return out


def print_splits(label, runs, windows):
    """The table of where one daemon's time went per window (medians over its rounds)."""
    splits = {w: [s for s in (split(r) for r in runs if r["window"] == w) if s] for w in windows}
    if not any(splits.values()):
        print(f"where {label}'s time goes: - (no metrics from the daemon)")
        return
    print(f"where {label}'s time goes (medians; from its /metrics over the measured seconds; CPU in us "
          "per login, thread CPU of 1 in 32 logins per phase; other = the rest of the process's CPU)")
    print(f"{'window':>6} | {'flush/login':>11} {'logins/flush':>12} {'writes/flush':>12} "
          f"{'flush ms':>8} | {'receive':>7} {'decide':>7} {'commit':>7} {'send':>7} "
          f"{'other':>7} | {'total':>7}")
    for w in windows:
        s = splits[w]
        if not s:
            continue
        g = lambda k: median([x[k] for x in s])
        print(f"{w:>6} | {f(g('flushes'), '11.3f')} {f(g('logins_per_commit'), '12.1f')} "
              f"{f(g('writes'), '12.1f')} {f(g('commit_ms'), '8.3f')} | "
              f"{f(g('receive'), '7.1f')} {f(g('decide'), '7.1f')} {f(g('commit'), '7.1f')} "
              f"{f(g('send'), '7.1f')} {f(g('other'), '7.1f')} | {f(g('total'), '7.1f')}")

