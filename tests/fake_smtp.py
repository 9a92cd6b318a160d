"""An SMTP server for otpd's tests, on aiosmtpd (PyPI).

Listens on 127.0.0.1 only, on a free port that it prints as the first line of standard
output, and serves until its parent kills it by pid. Every message it accepts is written to
DIR as NNNN.json ({"from", "to", "subject", "body"}, the body decoded as a mail client
would show it), first under a temporary name and then renamed, so a reader never sees half
a file.

usage: fake_smtp.py DIR MODE [CERT KEY]
  ok        accepts every message
  starttls  accepts every message, after STARTTLS and AUTH only (CERT and KEY in PEM)
  tls       the same over TLS from the first byte (SMTPS)
            AUTH takes the user "otpd" with the password "relay-secret", nothing else
  refuse    answers 550 to every message (a relay that says no)
  hang      accepts the TCP connection and never says a word
"""
import asyncio
import email
import email.policy
import json
import os
import socket
import ssl
import sys

DIR = sys.argv[1]
MODE = sys.argv[2]


class Handler:
    def __init__(self):
        self.n = 0

    async def handle_DATA(self, server, session, envelope):
        if MODE == "refuse":
            return "550 5.7.1 relaying denied for this sender"
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        self.n += 1
        record = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "subject": str(msg["subject"] or ""),
            "body": body.get_content() if body is not None else "",
        }
        tmp = os.path.join(DIR, f".{self.n:04d}.tmp")
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(DIR, f"{self.n:04d}.json"))
        return "250 2.0.0 OK"


def hang():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    print(s.getsockname()[1], flush=True)
    held = []
    while True:
        c, _ = s.accept()
        held.append(c)


def authenticator(server, session, envelope, mechanism, auth_data):
    from aiosmtpd.smtp import AuthResult, LoginPassword

    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"otpd",
        b"relay-secret",
    )
    # handled=False: aiosmtpd answers 235 or 535 itself.
    return AuthResult(success=ok, handled=False)


async def serve():
    from aiosmtpd.smtp import SMTP

    handler = Handler()
    loop = asyncio.get_running_loop()
    ctx = None
    if MODE in ("starttls", "tls"):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(sys.argv[3], sys.argv[4])
    if MODE == "starttls":
        factory = lambda: SMTP(  # noqa: E731
            handler,
            hostname="fake-relay.test",
            tls_context=ctx,
            require_starttls=True,
            authenticator=authenticator,
            auth_required=True,
        )
        server = await loop.create_server(factory, "127.0.0.1", 0)
    elif MODE == "tls":
        factory = lambda: SMTP(  # noqa: E731
            handler,
            hostname="fake-relay.test",
            authenticator=authenticator,
            auth_required=True,
            # The connection is TLS from the start; aiosmtpd only knows STARTTLS as TLS.
            auth_require_tls=False,
        )
        server = await loop.create_server(factory, "127.0.0.1", 0, ssl=ctx)
    else:
        factory = lambda: SMTP(handler, hostname="fake-relay.test")  # noqa: E731
        server = await loop.create_server(factory, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


if MODE == "hang":
    hang()
else:
    try:
        import aiosmtpd  # noqa: F401
    except ImportError:
        print(
            "the Python module aiosmtpd is missing: python3 -m pip install aiosmtpd "
            "(tests/run.sh does this)",
            file=sys.stderr,
        )
        sys.exit(3)
    asyncio.run(serve())
