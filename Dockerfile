# One image for every Pygmy node: `pygmy serve catalog 2`, `pygmy serve frontend 0`, or `pygmy up`.
# The configuration is mounted (PYGMY_CONFIG=/etc/pygmy/pygmy.toml) or left to the built-in topology; the
# secrets come as PYGMY_ADMIN_TOKEN / PYGMY_CLUSTER_SECRET at run time and are never baked in here.
#
# BASE: any Debian-like image with python3 (>= 3.11) and its venv module. Default: the official slim one;
# `make test-image` builds on a base made from Debian packages with mmdebstrap (registries cannot be reached).
ARG BASE=docker.io/library/python:3.11-slim-bookworm

FROM ${BASE} AS build
# pip's own variables pass through, so a build can use a mirror or a folder of wheels instead of PyPI.
ARG PIP_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX
RUN python3 -m venv /opt/pygmy
COPY pyproject.toml README.md /src/
COPY pygmy /src/pygmy
# The dependencies are the project's own list (pyproject.toml), installed with the package; no compiler
# is needed for them (all ship wheels), and none reaches the final stage anyway.
RUN /opt/pygmy/bin/pip install --no-cache-dir --disable-pip-version-check /src

FROM ${BASE}
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/pygmy --shell /usr/sbin/nologin pygmy \
    && mkdir -p /var/lib/pygmy /etc/pygmy \
    && chown pygmy:pygmy /var/lib/pygmy
COPY --from=build /opt/pygmy /opt/pygmy
ENV PATH=/opt/pygmy/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYGMY_DATA_DIR=/var/lib/pygmy \
    PYGMY_BIND_HOST=0.0.0.0 \
    PYGMY_PROBE_PORT=8080
USER pygmy
WORKDIR /var/lib/pygmy
VOLUME ["/var/lib/pygmy"]
EXPOSE 8080 8101 8201 9101 9201
# SIGTERM: a leader hands leadership to a follower before it exits, so a rolling restart pauses no writes.
STOPSIGNAL SIGTERM
# Liveness only (readiness is the orchestrator's /readyz probe): set PYGMY_PROBE_PORT to the node's HTTP port.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/livez' % os.environ['PYGMY_PROBE_PORT'], timeout=2)"]
ENTRYPOINT ["pygmy"]
CMD ["--help"]
