"""`warden`: the command line (SPEC "Interfaces"). Each subcommand lives in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, help); modules expose add_arguments(parser) and run(args) -> int
COMMANDS: dict[str, tuple[str, str]] = {
    "replay": ("streams.replay", "run the detectors over a JSONL file, no Kafka"),
    "simulate": ("streams.simulate", "generate labelled synthetic traffic"),
    "worker": ("streams.worker", "run the stream processor (Kafka + Redis)"),
    "demo": ("streams.demo", "run the worker on a simulated workload and explain the result"),
    "projections": ("streams.rebuild_cmd", "rebuild the Redis read model from account-decisions"),
    "account": ("streams.account_cmd", "show an account's status and evidence from Redis"),
    "appeal": ("streams.appeal_cmd", "file or decide an appeal (publishes a command)"),
    "lift": ("streams.lift_cmd", "lift a restriction manually (publishes a command)"),
    "false-positive": ("streams.false_positive_cmd",
                       "lift a restriction as a false positive (publishes a command)"),
    "restrict": ("streams.restrict_cmd", "restrict features manually (publishes a command)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="warden", description="Warden abuse-detection streams")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
