#!/usr/bin/env python3
"""A real SMTP server for berth's tests and benches (aiosmtpd): every accepted mail is
parsed with the standard library and appended as one JSON line to --out:
{"received_at", "mail_from", "rcpt_tos", "subject", "message_id", "text", "html"}.
With --count-only it writes only the receipt time and the Message-ID (for benches).
Prints "ready <port>" once it listens; stops on SIGTERM/SIGINT."""

import argparse
import asyncio
import email
import email.policy
import json
import signal
import time

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, out, count_only):
        self.out = out
        self.count_only = count_only

    async def handle_DATA(self, server, session, envelope):
        received_at = time.time()
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        record = {"received_at": received_at, "message_id": str(message["message-id"])}
        if not self.count_only:
            text = message.get_body(("plain",))
            html = message.get_body(("html",))
            record.update(
                mail_from=envelope.mail_from,
                rcpt_tos=envelope.rcpt_tos,
                subject=str(message["subject"]),
                text=text.get_content() if text else None,
                html=html.get_content() if html else None,
            )
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()
        return "250 OK"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--count-only", action="store_true")
    args = parser.parse_args()
    out = open(args.out, "a", encoding="utf-8")
    controller = Controller(Sink(out, args.count_only), hostname="127.0.0.1", port=args.port)
    controller.start()
    print(f"ready {args.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.run_until_complete(stop.wait())
    controller.stop()
    out.close()


if __name__ == "__main__":
    main()
