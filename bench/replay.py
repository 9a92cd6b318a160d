"""The replay check bench/run.sh makes after all rounds (NAME-replay.json): every account's
last accepted code sent again through one front-end or node, each of which must be refused.
After the rounds, not inside them: a refused replay counts as a failure, whose clearing by
the account's next Accept would fall into whatever configuration ran next on those accounts.
Shared by summary.py and run.sh's PostgreSQL summary."""
import json


def after_rounds(work, name):
    """(ok, the replay's figures or None); no file means no check was made, which is fine."""
    try:
        with open(f"{work}/{name}-replay.json") as fh:
            s = json.load(fh)
    except FileNotFoundError:
        return True, None
    except Exception as e:
        print(f"{name} replay check: no result ({e})")
        return False, None
    return s["ok"], s.get("replay")


def describe(reps):
    """The summary's words for the replay checks of one front-end or configuration (several
    for two nodes), to follow its totals; empty without any. Accounts whose last code is
    also one of their next codes are not sent (an Accept there would be a fresh code), and
    are counted so that a short total says why."""
    reps = [r for r in reps if r]
    if not reps:
        return ""
    n = sum(r["replayed"] for r in reps)
    d = sum(r["double_accepted"] for r in reps)
    k = sum(r.get("coincident", 0) for r in reps)
    s = sum(r.get("skipped_repeating", 0) for r in reps)
    out = f"; replay of {n} last accepted codes: {d} accepted again"
    if k:
        out += f" ({k} more accepted as the same code of a counter just ahead)"
    if s:
        out += f" ({s} not sent: that code is also one of the account's next 10, a fresh code to otpd)"
    return out
