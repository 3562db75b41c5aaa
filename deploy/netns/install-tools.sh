#!/usr/bin/env bash
# The Debian tools the network-namespace tests need: iproute2 (ip netns, veth, bridge) and iptables
# (partitions and packet loss). Idempotent; skipped when not root (those tests then skip, saying why).
set -euo pipefail
if command -v ip >/dev/null && command -v iptables >/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "not root: the network-namespace tests will be skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends iproute2 iptables >/dev/null
