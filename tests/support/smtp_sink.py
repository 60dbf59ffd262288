#!/usr/bin/python3
"""Test-support SMTP sink.

Run it with Debian's interpreter, which has python3-aiosmtpd (1.4.x):

    /usr/bin/python3 tests/support/smtp_sink.py --dir DIR \
        [--tls-mode starttls|tls|none] [--user U --password P]

On start it:

* creates DIR if needed;
* unless --tls-mode none, uses the `openssl` CLI to make a throwaway CA
  (DIR/ca.pem, CA:TRUE) and a leaf certificate signed by it (X.509 v3,
  CN=localhost, SAN DNS:localhost + IP:127.0.0.1, CA:FALSE,
  extendedKeyUsage serverAuth).  DIR/cert.pem holds leaf + CA (the chain the
  server presents), DIR/key.pem the leaf's key;
* listens on 127.0.0.1 on a port picked by the kernel (port 0, read back from
  the listening socket, so there is no race between picking and binding);
* prints exactly one line to stdout and flushes it:
      {"port": N, "cert": "/abs/DIR/ca.pem"}
  "cert" is the CA file a client should trust (null with --tls-mode none).

Modes:
  starttls  STARTTLS offered and required before MAIL/AUTH (default).
  tls       implicit TLS from the first byte (SMTPS).
  none      plain text, no TLS at all.

With --user/--password, AUTH PLAIN and AUTH LOGIN are offered and required
before MAIL; only that exact pair is accepted.  AUTH is only offered/accepted
over TLS unless --tls-mode none.

Every accepted message is stored as DIR/msg-0001.eml, msg-0002.eml, ... (raw
RFC 5322 bytes as received after dot-unstuffing) with a sidecar
DIR/msg-0001.json: {"mail_from": ..., "rcpt_tos": [...], "auth_user": ...}.
The .json is written first and the .eml last, both atomically (temp file then
rename/link), so once msg-NNNN.eml exists both files are complete.

It serves until SIGTERM/SIGINT (exit status 0) or until its stdin reaches EOF,
so a test should spawn it with a piped stdin and keep the write end open for
as long as the server is needed (dropping it stops the server, including when
the test process dies).  Use --ignore-stdin to disable that.

If DIR/delay-ms exists, each reply to DATA waits that many milliseconds
after the message is stored (read per message, so a test can change it).

Use one DIR per server instance.
"""

import argparse
import asyncio
import hmac
import json
import logging
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import warnings

try:
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
except ImportError as exc:  # pragma: no cover - environment problem
    sys.stderr.write(
        "smtp_sink: cannot import aiosmtpd (%s); run this script with "
        "/usr/bin/python3 and install python3-aiosmtpd\n" % exc
    )
    sys.exit(2)

LISTEN_HOST = "127.0.0.1"
SERVER_NAME = "localhost"  # EHLO greeting name; avoids a slow getfqdn() lookup

log = logging.getLogger("smtp_sink")

CA_CNF = """\
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = smtp-sink throwaway test CA
[v3_ca]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
"""

LEAF_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = localhost
"""

LEAF_EXT = """\
[v3_leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
"""


def _openssl(args, cwd):
    proc = subprocess.run(
        ["openssl"] + args,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            "openssl %s failed (%d): %s"
            % (args[0], proc.returncode, proc.stderr.decode(errors="replace"))
        )


def generate_certs(out_dir):
    """Create ca.pem, cert.pem (leaf + CA) and key.pem in out_dir.

    Everything is generated in a private temporary directory inside out_dir
    and then renamed into place, so readers never see half-written files.
    Returns (ca_path, chain_path, key_path) as absolute paths.
    """
    work = tempfile.mkdtemp(prefix=".certgen-", dir=out_dir)
    try:
        # An OPENSSL_CONF pointing somewhere odd must not influence us; all
        # settings come from the explicit -config/-extfile files below.
        for name, text in (("ca.cnf", CA_CNF), ("leaf.cnf", LEAF_CNF),
                           ("leaf_ext.cnf", LEAF_EXT)):
            with open(os.path.join(work, name), "w") as f:
                f.write(text)
        _openssl(["req", "-x509", "-config", "ca.cnf", "-newkey", "rsa:2048",
                  "-nodes", "-sha256", "-days", "2",
                  "-set_serial", "0x" + secrets.token_hex(15),
                  "-keyout", "ca.key", "-out", "ca.pem"], work)
        _openssl(["req", "-new", "-config", "leaf.cnf", "-newkey", "rsa:2048",
                  "-nodes", "-sha256", "-keyout", "key.pem",
                  "-out", "leaf.csr"], work)
        _openssl(["x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem",
                  "-CAkey", "ca.key", "-sha256", "-days", "2",
                  "-set_serial", "0x" + secrets.token_hex(15),
                  "-extfile", "leaf_ext.cnf", "-extensions", "v3_leaf",
                  "-out", "leaf.pem"], work)
        with open(os.path.join(work, "chain.pem"), "wb") as out:
            for name in ("leaf.pem", "ca.pem"):
                with open(os.path.join(work, name), "rb") as f:
                    out.write(f.read())
        os.chmod(os.path.join(work, "key.pem"), 0o600)
        ca_path = os.path.join(out_dir, "ca.pem")
        chain_path = os.path.join(out_dir, "cert.pem")
        key_path = os.path.join(out_dir, "key.pem")
        # Key and chain before the CA: a client waiting for ca.pem then finds
        # the server's files complete as well.
        os.replace(os.path.join(work, "key.pem"), key_path)
        os.replace(os.path.join(work, "chain.pem"), chain_path)
        os.replace(os.path.join(work, "ca.pem"), ca_path)
        return ca_path, chain_path, key_path
    finally:
        shutil.rmtree(work, ignore_errors=True)


class Sink:
    """aiosmtpd handler that stores every message in a directory."""

    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.counter = 0
        self.pid = os.getpid()

    def _tmp(self, final_name):
        return os.path.join(
            self.out_dir, ".%s.%d.%s.tmp" % (final_name, self.pid,
                                            secrets.token_hex(4)))

    def _claim_number(self, sidecar):
        """Write the sidecar under the next free msg-NNNN.json name.

        os.link() fails if the name exists, so numbers are never reused even
        if something else wrote into the directory.
        """
        while True:
            self.counter += 1
            base = "msg-%04d" % self.counter
            tmp = self._tmp(base + ".json")
            with open(tmp, "wb") as f:
                f.write(sidecar)
            try:
                os.link(tmp, os.path.join(self.out_dir, base + ".json"))
            except FileExistsError:
                continue
            finally:
                os.unlink(tmp)
            return base

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content
        if raw is None:
            raw = envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        # session.auth_data is what the authenticator put in AuthResult (a
        # LoginPassword); session.login_data is deprecated in aiosmtpd.
        auth_data = getattr(session, "auth_data", None)
        auth_user = getattr(auth_data, "login", None)
        if isinstance(auth_user, (bytes, bytearray)):
            auth_user = bytes(auth_user).decode("utf-8", "replace")
        sidecar = json.dumps({
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "auth_user": auth_user,
        }).encode("utf-8")
        try:
            base = self._claim_number(sidecar)
            tmp = self._tmp(base + ".eml")
            with open(tmp, "wb") as f:
                f.write(raw)
            os.replace(tmp, os.path.join(self.out_dir, base + ".eml"))
        except Exception:
            log.exception("storing message failed")
            return "451 4.3.0 smtp_sink could not store the message"
        log.debug("stored %s", base)
        # DIR/delay-ms (written by the test) holds the reply back after storing, so a client
        # killed meanwhile has had its message accepted without hearing so.
        try:
            with open(os.path.join(self.out_dir, "delay-ms")) as f:
                await asyncio.sleep(int(f.read().strip() or 0) / 1000.0)
        except (FileNotFoundError, ValueError):
            pass
        return "250 2.0.0 OK stored as %s" % base


def make_authenticator(user, password):
    want_user = user.encode("utf-8")
    want_pass = password.encode("utf-8")

    def authenticator(server, session, envelope, mechanism, auth_data):
        if mechanism not in ("PLAIN", "LOGIN"):
            return AuthResult(success=False, handled=False)
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok_user = hmac.compare_digest(bytes(auth_data.login or b""), want_user)
        ok_pass = hmac.compare_digest(bytes(auth_data.password or b""),
                                      want_pass)
        if ok_user and ok_pass:
            return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    return authenticator


class _DropMessages(logging.Filter):
    def __init__(self, *texts):
        super().__init__()
        self.texts = texts

    def filter(self, record):
        msg = record.getMessage()
        return not any(t in msg for t in self.texts)


def watch_stdin(loop, stop):
    """Thread body: stop the server once stdin reaches EOF."""
    try:
        while os.read(0, 65536):
            pass
        why = "stdin reached EOF"
    except OSError as exc:
        why = "stdin unreadable (%s)" % exc
    sys.stderr.write("smtp_sink: %s, shutting down\n" % why)
    sys.stderr.flush()
    try:
        loop.call_soon_threadsafe(stop)
    except RuntimeError:
        pass  # loop already closed


async def serve(args):
    out_dir = os.path.abspath(args.dir)
    os.makedirs(out_dir, exist_ok=True)

    tls_ctx = None
    ca_path = None
    if args.tls_mode != "none":
        ca_path, chain_path, key_path = generate_certs(out_dir)
        tls_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_ctx.check_hostname = False
        tls_ctx.verify_mode = ssl.CERT_NONE
        tls_ctx.load_cert_chain(chain_path, key_path)

    smtp_kwargs = dict(
        hostname=SERVER_NAME,
        ident="smtp_sink (aiosmtpd)",
        enable_SMTPUTF8=True,
        decode_data=False,
        timeout=120,
    )
    if args.tls_mode == "starttls":
        smtp_kwargs.update(tls_context=tls_ctx, require_starttls=True)
    if args.user is not None:
        smtp_kwargs.update(
            auth_required=True,
            authenticator=make_authenticator(args.user, args.password),
        )
    if args.tls_mode == "starttls":
        smtp_kwargs["auth_require_tls"] = True
    else:
        # none: plain AUTH is what was asked for.
        # tls: aiosmtpd 1.4.3 only counts a STARTTLS upgrade as "TLS" and
        # would refuse AUTH on an implicit-TLS connection with 538; but on this
        # listener every connection is TLS from the first byte, so AUTH never
        # travels in the clear anyway.
        smtp_kwargs["auth_require_tls"] = False

    handler = Sink(out_dir)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, loop=loop, **smtp_kwargs),
        host=LISTEN_HOST,
        port=0,
        ssl=tls_ctx if args.tls_mode == "tls" else None,
        reuse_address=True,
    )
    port = server.sockets[0].getsockname()[1]

    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    if not args.ignore_stdin:
        threading.Thread(target=watch_stdin, args=(loop, done.set),
                         name="stdin-watch", daemon=True).start()

    sys.stdout.write(json.dumps({"port": port, "cert": ca_path}) + "\n")
    sys.stdout.flush()

    try:
        await done.wait()
    finally:
        server.close()
        # asyncio.run() cancels the per-connection tasks left afterwards.
    return 0


def parse_args(argv):
    p = argparse.ArgumentParser(description="SMTP sink for tests")
    p.add_argument("--dir", required=True,
                   help="directory for cert/key and received messages")
    p.add_argument("--tls-mode", choices=("starttls", "tls", "none"),
                   default="starttls")
    p.add_argument("--user", help="require AUTH with this user name")
    p.add_argument("--password", help="password for --user")
    p.add_argument("--ignore-stdin", action="store_true",
                   help="do not exit when stdin reaches EOF")
    p.add_argument("--verbose", action="store_true",
                   help="log SMTP sessions to stderr")
    args = p.parse_args(argv)
    if (args.user is None) != (args.password is None):
        p.error("--user and --password go together")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="smtp_sink[%(process)d] %(name)s %(levelname)s: %(message)s",
    )
    # Keep stderr quiet (a parent that pipes stderr but never reads it could
    # otherwise block us): the first warning is deliberate for --tls-mode
    # tls/none with --user (see serve()); the second is logged by aiosmtpd
    # itself on every successful AUTH.
    logging.getLogger("mail.log").addFilter(_DropMessages(
        "auth_required == True but auth_require_tls == False",
        "Session.login_data is deprecated",
    ))
    warnings.filterwarnings("ignore", message="Requiring AUTH while not")
    try:
        return asyncio.run(serve(args))
    except Exception as exc:
        sys.stderr.write("smtp_sink: %s\n" % exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
