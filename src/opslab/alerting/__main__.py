"""`python -m opslab.alerting --port P --kafka HOST:PORT`: run the alert bridge."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn
from confluent_kafka import Producer

from opslab.alerting.bridge import Bridge


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m opslab.alerting", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--kafka", required=True)
    parser.add_argument("--state-marker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    quiet = logging.getLogger("opslab.alerting.kafka")
    quiet.propagate = False
    producer = Producer({"bootstrap.servers": args.kafka, "acks": "all", "linger.ms": 10, "logger": quiet})
    bridge = Bridge(producer)
    try:
        uvicorn.run(bridge, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, lifespan="off")
    finally:
        producer.flush(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
