"""Serve a function as sms.serving serves the endpoint (its hardened worker), from any source.

    python bench/serve.py --source=bench/trivial.py --target=trivial --host=H --port=P

sms.serving always serves main.py; this is its main() with the source as an argument, so that
with --guarded the benchmark starts the endpoint and its reference the same way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # sms.serving, for gunicorn

import functions_framework
from functions_framework._http.gunicorn import GunicornApplication


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = functions_framework.create_app(target=args.target, source=args.source)
    GunicornApplication(
        app, args.host, args.port, False, worker_class="sms.serving.GuardedWorker"
    ).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
