"""Checks that docker-compose.yml parses and has the services the README promises."""
import sys

import yaml

with open(sys.argv[1], encoding="utf-8") as f:
    doc = yaml.safe_load(f)
services = doc.get("services", {})
missing = [s for s in ("nats", "orders-service") if s not in services]
if missing:
    sys.exit(f"docker-compose.yml lacks services: {missing}")
nats_cmd = " ".join(map(str, services["nats"].get("command", [])))
if "-js" not in nats_cmd and "--jetstream" not in nats_cmd:
    sys.exit("the nats service does not enable JetStream")
env = services["orders-service"].get("environment", {})
for key in ("NATS_SERVER", "NATS_USERNAME", "NATS_PASSWORD"):
    if key not in env:
        sys.exit(f"orders-service lacks environment {key}")
print("docker-compose.yml: ok,", ", ".join(services))
