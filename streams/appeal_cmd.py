"""`warden appeal file ID` / `warden appeal decide ID --grant|--deny`: publish an appeal command.

The worker answers with `appeal_received` / `appeal_rejected`, or `lifted`
(appeal_granted) / `appeal_denied` (SPEC "Restriction lifecycle").
"""

from __future__ import annotations

import argparse

from streams import admin


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="appeal_command", required=True, metavar="ACTION")
    filed = sub.add_parser("file", help="file an appeal on the user's behalf")
    admin.add_common(filed)
    decide = sub.add_parser("decide", help="grant or deny the pending appeal")
    admin.add_common(decide)
    verdict = decide.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--grant", dest="granted", action="store_true", default=None,
                         help="grant: lift the restriction (overturned)")
    verdict.add_argument("--deny", dest="granted", action="store_false",
                         help="deny: the restriction stays")


def run(args: argparse.Namespace) -> int:
    if args.appeal_command == "file":
        return admin.submit("appeal file", admin.build_command("appeal_filed", args))
    return admin.submit("appeal decide",
                        admin.build_command("appeal_decided", args, granted=args.granted))
