"""Test-only router for the provider's Lambda endpoint (127.0.0.1 only).

moto stores Lambda functions but cannot run them (it would need Docker), while `cargo lambda watch`
runs the real custom-header-fn but knows nothing of the control plane. The AWS provider has a
single Lambda endpoint for both, so this proxy sits there: Invoke calls
(POST /2015-03-31/functions/<name>/invocations) go to cargo lambda watch, renamed to the binary it
serves (it only knows functions by binary name), and every other call (CreateFunction,
GetFunction, DeleteFunction...) goes to moto.

    python3 lambda_proxy.py --port P --moto-port M --watch-port W --binary bootstrap
"""

import argparse
import http.client
import http.server
import re
import sys

INVOKE_PATH = re.compile(r"^/2015-03-31/functions/[^/?]+/invocations(?P<query>\?.*)?$")
# Per-hop headers the proxy must not pass along (RFC 9110 7.6.1); lengths are recomputed.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer", "content-length"}


def make_handler(moto_port: int, watch_port: int, binary: str):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            invoke = INVOKE_PATH.match(self.path) if self.command == "POST" else None
            if invoke:
                port, path = watch_port, f"/2015-03-31/functions/{binary}/invocations{invoke['query'] or ''}"
            else:
                port, path = moto_port, self.path
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            upstream = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            try:
                upstream.request(self.command, path, body=body, headers=headers)
                response = upstream.getresponse()
                payload = response.read()
            finally:
                upstream.close()
            self.send_response_only(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in HOP_BY_HOP:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            if invoke:
                print(f"lambda_proxy: {self.command} {self.path} -> cargo lambda watch: {response.status}", file=sys.stderr, flush=True)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _forward

        def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
            pass  # one line per invocation (above) is enough; the control plane calls are moto's business

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--moto-port", type=int, required=True)
    parser.add_argument("--watch-port", type=int, required=True)
    parser.add_argument("--binary", default="bootstrap")
    args = parser.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.moto_port, args.watch_port, args.binary))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
