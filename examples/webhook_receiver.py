#!/usr/bin/env python3
"""A webhook receiver for callhook, on the standard library only: it verifies each delivery's
Standard Webhooks signature, prints the event, and answers 204 (401 when the signature does
not verify, so that callhook retries and the delivery log shows it).

    python3 examples/webhook_receiver.py --port 9000 --secret whsec_...   [--quiet | --full]
"""

import argparse
import base64
import hashlib
import hmac
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_SECS = 5 * 60


def verify(secret, headers, body):
    """True when one of the v1 signatures is HMAC-SHA256 of "{id}.{timestamp}.{body}", keyed
    by the base64-decoded secret after whsec_, and the timestamp is within five minutes."""
    msg_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > TOLERANCE_SECS:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(signature.removeprefix("v1,"), expected)
        for signature in headers.get("webhook-signature", "").split()
        if signature.startswith("v1,")
    )


def summary(event):
    data = event["data"]
    if event["type"] == "call.result":
        return f"call {data['id']} to {data['to']}: {data['result']} ({data['result_source']})"
    if event["type"] == "outcome.updated":
        return f"conversation {data['conversation_uuid']}: {data['status']}"
    return f"campaign {data['id']} {data['state']}: {data['counts']['results']}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--secret", help="the subscription's whsec_ secret (unset: not checked)")
    parser.add_argument("--quiet", action="store_true", help="print nothing per delivery")
    parser.add_argument("--full", action="store_true", help="print each event's whole data")
    args = parser.parse_args()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            verified = args.secret is None or verify(args.secret, self.headers, body)
            if not args.quiet:
                event = json.loads(body)
                mark = "verified" if args.secret else "unchecked"
                print(f"{self.headers['webhook-id']} {event['type']} ({mark}): "
                      f"{json.dumps(event['data']) if args.full else summary(event)}", flush=True)
            self.send_response(204 if verified else 401)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_):
            pass

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
