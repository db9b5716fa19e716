#!/usr/bin/env python3
"""An HTTPS front for a registry, to test weir's 'schema.registry.ssl.ca.location'.

    tls_proxy.py --upstream http://127.0.0.1:38081/apis/ccompat/v7 --dir DIR

Makes a CA and a certificate for 127.0.0.1 signed by it (openssl), writes the CA to DIR/ca.pem
and another, unrelated CA to DIR/other-ca.pem, then serves HTTPS on a free loopback port,
passing each request (method, path, body, Content-Type, Accept, Authorization) to the upstream
registry and its answer back. The first line it prints is its URL; it serves until killed.
"""

import argparse
import http.server
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certificates(folder):
    """ca.pem (with its key), server.pem and server-key.pem for 127.0.0.1, other-ca.pem."""
    path = lambda name: os.path.join(folder, name)
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-subj", "/CN=weir test %s" % ca, "-keyout", path(ca + "-key.pem"),
                "-out", path(ca + ".pem"))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", path("server-key.pem"), "-out", path("server.csr"))
    with open(path("server.ext"), "w") as ext:
        ext.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                  "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", path("server.csr"), "-CA", path("ca.pem"),
            "-CAkey", path("ca-key.pem"), "-CAcreateserial", "-days", "2",
            "-extfile", path("server.ext"), "-out", path("server.pem"))


def handler_for(upstream):
    class Forward(http.server.BaseHTTPRequestHandler):
        def forward(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            request = urllib.request.Request(upstream + self.path, data=body, method=self.command)
            for name in ("Content-Type", "Accept", "Authorization"):
                if self.headers.get(name):
                    request.add_header(name, self.headers[name])
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    status, headers, payload = answer.status, answer.headers, answer.read()
            except urllib.error.HTTPError as error:
                status, headers, payload = error.code, error.headers, error.read()
            self.send_response(status)
            self.send_header("Content-Type", headers.get("Content-Type", "application/json"))
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = forward

        def log_message(self, *args):
            pass

    return Forward


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--dir", required=True)
    args = parser.parse_args()
    make_certificates(args.dir)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), handler_for(args.upstream.rstrip("/")))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(os.path.join(args.dir, "server.pem"),
                            os.path.join(args.dir, "server-key.pem"))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print("https://127.0.0.1:%d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
