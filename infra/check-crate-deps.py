#!/usr/bin/env python3
"""The crate rules of docs/architecture.md, read from `cargo metadata`:
- no service crate depends on another service crate (dev-dependencies included);
- a `*-core` crate depends on no berth crate but berth-schemas;
- the `berth` CLI depends directly on no service crate (only berth-dev links them).
Prints each broken rule and exits 1, else one line."""
import json
import subprocess
import sys

SERVICES = {
    "berth-provisioner", "berth-pod-lifecycle", "berth-billing",
    "berth-scheduler", "berth-notifier", "berth-dashboard",
}
LINKS_EVERYTHING = {"berth-dev", "berth-tests"}

metadata = json.loads(subprocess.run(
    ["cargo", "metadata", "--format-version", "1", "--no-deps"],
    check=True, capture_output=True, text=True).stdout)
broken = []
for package in metadata["packages"]:
    name = package["name"]
    berth = {d["name"] for d in package["dependencies"] if d["name"].startswith("berth")}
    if name in SERVICES:
        for other in sorted(berth & (SERVICES - {name})):
            broken.append(f"service {name} depends on service {other}")
    if name.endswith("-core"):
        for other in sorted(berth - {"berth-schemas"}):
            broken.append(f"core {name} depends on {other} (only berth-schemas allowed)")
    if name == "berth":
        for other in sorted(berth & SERVICES):
            broken.append(f"the CLI depends on service {other} (go through berth-dev or NATS)")
for line in broken:
    print(line)
if broken:
    sys.exit(1)
print(f"crate rules hold ({len(metadata['packages'])} crates)")
