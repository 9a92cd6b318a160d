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
