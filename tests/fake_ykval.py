"""A YK-VAL-style validation server (Yubico validation protocol 2.0) for otpd's tests.

Listens on 127.0.0.1 only, on a free port that it prints as the first line of standard
output, and serves until its parent kills it by pid.

usage: fake_ykval.py API_KEY_BASE64 MODE
  ok        checks the request's signature, answers OK once per OTP, then REPLAYED_OTP
  replayed  answers REPLAYED_OTP
  badsig    answers OK, but signed with another key
  hang      accepts the connection and never answers
"""
import base64
import hashlib
import hmac
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlparse

KEY = base64.b64decode(sys.argv[1])
MODE = sys.argv[2]
SEEN = set()
LOCK = threading.Lock()


def sign(params, key):
    """HMAC-SHA1 over the parameters sorted by name, joined as k=v&k=v, in base64."""
    msg = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    return base64.b64encode(hmac.new(key, msg.encode(), hashlib.sha1).digest()).decode()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if MODE == "hang":
            time.sleep(60)
            return
        query = dict(parse_qsl(urlparse(self.path).query, keep_blank_values=True))
        got = query.pop("h", "")
        otp = query.get("otp", "")
        answer = {
            "t": time.strftime("%Y-%m-%dT%H:%M:%SZ0000", time.gmtime()),
            "otp": otp,
            "nonce": query.get("nonce", ""),
            "sl": "100",
        }
        if not hmac.compare_digest(sign(query, KEY), got):
            status = "BAD_SIGNATURE"
        elif MODE == "replayed":
            status = "REPLAYED_OTP"
        else:
            with LOCK:
                status = "REPLAYED_OTP" if otp in SEEN else "OK"
                SEEN.add(otp)
        answer["status"] = status
        key = b"another key, not it!" if MODE == "badsig" else KEY
        answer["h"] = sign(answer, key)
        body = "".join(f"{k}={v}\r\n" for k, v in answer.items()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
