#!/usr/bin/env bash
# `make test-image`: build the real Dockerfile without a Docker engine or a registry, then run
# `pygmy --help` inside the built image's filesystem.
#   1. a base image from Debian packages (mmdebstrap minbase + python3 + venv), imported into podman;
#   2. the project's wheels (pygmy and its dependencies, from pyproject.toml) built here, handed to the
#      image build as a read-only folder pip installs from;
#   3. `podman build --isolation chroot` of the Dockerfile on that base;
#   4. the image's root filesystem mounted (`podman image mount`) and `pygmy --help` run in it with chroot,
#      as the image's user. Running the container itself does not work on these machines.
# Needs root. Work files go to $WORK (default /tmp/pygmy-image); the base is reused if it exists.
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${WORK:-/tmp/pygmy-image}
BASE_TAG=localhost/pygmy-base:bookworm
IMAGE_TAG=localhost/pygmy:test
PYTHON=${PYTHON:-python3}
mkdir -p "$WORK"
deploy/image/install-tools.sh
say() { printf '\n== %s\n' "$*"; }

if ! podman image exists "$BASE_TAG"; then
    say "making the base image from Debian packages (mmdebstrap; a few minutes the first time)"
    rm -f "$WORK/rootfs.tar"
    mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,passwd bookworm "$WORK/rootfs.tar"
    podman import "$WORK/rootfs.tar" "$BASE_TAG"
fi

say "building the project's wheels"
rm -rf "$WORK/wheels"
"$PYTHON" -m pip wheel --quiet --wheel-dir "$WORK/wheels" .
# and the build backend pyproject.toml names, which pip fetches to build pygmy inside the image
"$PYTHON" -m pip download --quiet --dest "$WORK/wheels" "setuptools>=77"

say "podman build --isolation chroot"
podman build --isolation chroot --build-arg BASE="$BASE_TAG" \
    --volume "$WORK/wheels:/wheels:ro" --build-arg PIP_FIND_LINKS=/wheels --build-arg PIP_NO_INDEX=1 \
    --tag "$IMAGE_TAG" --file Dockerfile .

say "pygmy --help inside the image's filesystem, as its user"
root=$(podman image mount "$IMAGE_TAG")
trap 'podman image unmount "$IMAGE_TAG" >/dev/null' EXIT
user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE_TAG")
test "$user" = pygmy
test -d "$root/var/lib/pygmy"
test ! -e "$root/usr/bin/gcc"  # the final stage has no compiler
chroot --userspec=pygmy:pygmy "$root" /usr/bin/env PATH=/opt/pygmy/bin:/usr/bin:/bin pygmy --help | tee "$WORK/help.txt"
grep -q "serve" "$WORK/help.txt"
say "image $IMAGE_TAG built and runs pygmy --help"
