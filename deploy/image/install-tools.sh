#!/usr/bin/env bash
# The Debian tools `make test-image` needs: podman (builds the Dockerfile without a Docker engine, with
# --isolation chroot) and mmdebstrap (makes the base image from Debian packages, since registry images
# cannot be pulled here). Idempotent: skips apt when both are already installed. Needs root.
set -euo pipefail
if command -v podman >/dev/null && command -v mmdebstrap >/dev/null; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends podman mmdebstrap buildah fuse-overlayfs uidmap >/dev/null
