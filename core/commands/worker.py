"""`layerfit worker [--host 127.0.0.1] [--port 50052] [--mem SIZE]`: serve this machine over llama.cpp's RPC."""

from __future__ import annotations

import argparse
import sys

from core.cli_options import CliError
from core.rpc import WorkerError, serve


def run(args: argparse.Namespace) -> int:
    """Run the worker until Ctrl+C. Bad options and a busy port are one plain line, exit 1 or 2."""

    def announce(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    try:
        serve(args.host, args.port, args.mem, args.threads, announce=announce)
    except WorkerError as exc:
        raise CliError(str(exc)) from exc
    return 0
