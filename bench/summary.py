#!/usr/bin/env python3
"""The printed summary of bench/run.sh, from the JSON files of one run's work directory.

  bench/summary.py --work DIR --rounds N [--freeradius 0|1] [--otpd-rss KIB] [--fr-rss KIB]
                   [--big N --big-otpd KIB --big-fr KIB]

DIR holds otpd-R.json and fr-R.json (otpd-bench run --json, rounds 1..N) and disk.json (the
flush probe: p50_us, p99_us). Apart from bench/run.sh so that tests/bench_smoke.rs can check
the summary's lines against a short run of its own.
"""
import argparse
import json
import statistics

from split import print_splits

ap = argparse.ArgumentParser()
ap.add_argument("--work", required=True)
ap.add_argument("--rounds", type=int, required=True)
ap.add_argument("--freeradius", default="1")
ap.add_argument("--otpd-rss", default="")
ap.add_argument("--fr-rss", default="")
ap.add_argument("--big", type=int, default=0)
ap.add_argument("--big-otpd", default="")
ap.add_argument("--big-fr", default="")
a = ap.parse_args()
work, rounds = a.work, a.rounds


def load(prefix):
    runs, ok, replay = [], True, None
    if prefix == "fr" and a.freeradius != "1":
        return runs, ok, replay
    for r in range(1, rounds + 1):
        try:
            with open(f"{work}/{prefix}-{r}.json") as fh:
                s = json.load(fh)
        except Exception as e:
            print(f"{prefix} round {r}: no result ({e})")
            ok = False
            continue
        runs += s["runs"]
        ok &= s["ok"]
        replay = s.get("replay") or replay
    return runs, ok, replay


def median(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def med(runs, window, key):
    return median([r.get(key) for r in runs if r["window"] == window])


def f(v, fmt):
    return format(v, fmt) if v is not None else "-"


otpd, otpd_ok, replay = load("otpd")
fr, fr_ok, _ = load("fr")
windows = sorted({r["window"] for r in otpd + fr})
print(f"medians of {rounds} rounds; accept/s, latency in ms, daemon CPU per request in us")
print(f"{'window':>6} | {'otpd acc/s':>10} {'p50':>6} {'p99':>6} {'cpu/r':>6} | "
      f"{'FR acc/s':>10} {'p50':>6} {'p99':>6} {'cpu/r':>6} | {'ratio':>5}")
for w in windows:
    x = med(otpd, w, "accepts_per_s")
    y = med(fr, w, "accepts_per_s")
    ratio = f"{x / y:.2f}" if x and y else "-"
    print(f"{w:>6} | {f(x, '10.0f')} {f(med(otpd, w, 'p50_ms'), '6.2f')} "
          f"{f(med(otpd, w, 'p99_ms'), '6.2f')} {f(med(otpd, w, 'daemon_cpu_us_per_req'), '6.1f')} | "
          f"{f(y, '10.0f')} {f(med(fr, w, 'p50_ms'), '6.2f')} {f(med(fr, w, 'p99_ms'), '6.2f')} "
          f"{f(med(fr, w, 'daemon_cpu_us_per_req'), '6.1f')} | {ratio:>5}")

# The durable bound at window 1: one login after the other, each needs the reference
# server's round trip (what a request costs with nothing durable) plus one flush.
try:
    with open(f"{work}/disk.json") as fh:
        disk = json.load(fh)
except Exception:
    disk = None
fr_mean = med(fr, 1, "mean_ms")
o1 = med(otpd, 1, "accepts_per_s")
if disk and fr_mean is not None:
    bound = 1e3 / (fr_mean + disk["p50_us"] / 1e3)
    share = f"{o1 / bound:.2f} of it (target 0.80)" if o1 is not None else "no otpd run at window 1"
    print(f"durable bound at window 1: 1 / (FreeRADIUS mean {fr_mean:.3f} ms + flush p50 "
          f"{disk['p50_us'] / 1e3:.3f} ms) = {bound:,.0f} logins/s; otpd {f(o1, ',.0f')} "
          f"accepts/s = {share}")
else:
    why = "no disk probe" if not disk else "needs FreeRADIUS rounds at window 1"
    print(f"durable bound at window 1: - ({why})")


print_splits("otpd", otpd, windows)

lost = sum(r["lost"] for r in otpd)
rej = sum(r["rejected"] + r["other"] for r in otpd)
bad = sum(r["bad_replies"] for r in otpd)
print(f"otpd: {sum(r['accepted'] for r in otpd)} accepted, {rej} rejected, {lost} lost, "
      f"{bad} bad answers" + (f"; replay of {replay['replayed']} last accepted codes: "
      f"{replay['double_accepted']} accepted again"
      + (f" ({replay['skipped_repeating']} not sent: that code is also one of the account's next "
         f"10, a fresh code to otpd)" if replay.get('skipped_repeating') else "")
      if replay else ""))
if fr:
    print(f"FreeRADIUS: {sum(r['accepted'] for r in fr)} accepted, "
          f"{sum(r['rejected'] + r['other'] for r in fr)} rejected, {sum(r['lost'] for r in fr)} lost")
mib = lambda k: f"{int(k) / 1024:.1f} MiB" if k else "-"
print(f"peak RSS: otpd {mib(a.otpd_rss)}, FreeRADIUS {mib(a.fr_rss)} (after all rounds)")
if a.big > 0:
    print(f"peak RSS with {a.big} accounts: otpd {mib(a.big_otpd)}, FreeRADIUS {mib(a.big_fr)}")
print("verdict:", "OK" if otpd_ok else "NOT OK (lost, rejected, bad or double-accepted answers above)")
