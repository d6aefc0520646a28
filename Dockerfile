# scim-bridge: a production image (no test dependencies), running as a non-root user.
# Build: docker build -t scim-bridge .
# Run:   docker run -p 8000:8000 -e BRIDGE_SCIM__TOKENS='{"entra": "..."}' \
#          -e BRIDGE_MODYO__BASE_URL=https://acme.modyo.cloud -e BRIDGE_MODYO__TOKEN=... scim-bridge
# With a TOML file instead (its [server] port applies; listen on 0.0.0.0 to be reachable):
#        docker run -v ./bridge.toml:/etc/scim-bridge/bridge.toml:ro scim-bridge \
#          serve --config /etc/scim-bridge/bridge.toml --host 0.0.0.0
# CI builds and runs this file without a daemon: .ci/image.
# Every package at the version and hash of uv.lock (requirements/, exported by .ci/lock): the
# image ships exactly the set CI tested.
FROM python:3.12-slim-bookworm AS build
WORKDIR /src
COPY requirements/app.txt requirements/build.txt ./requirements/
RUN pip install --no-cache-dir --require-hashes -r requirements/build.txt \
    && pip wheel --no-cache-dir --require-hashes --wheel-dir /wheels -r requirements/app.txt
COPY pyproject.toml README.md ./
COPY bridge ./bridge
RUN pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels .

FROM python:3.12-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin bridge
COPY --from=build /src/requirements/app.txt /tmp/app.txt
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels --require-hashes -r /tmp/app.txt \
    && pip install --no-cache-dir --no-index --no-deps /wheels/scim_bridge-*.whl \
    && rm -rf /wheels /tmp/app.txt
USER 10001
# 8000: the SCIM listener (what your ingress routes Entra to). 9100: the internal listener
# (/metrics) once internal.port = 9100 and internal.host = "0.0.0.0" are set (it is off, and
# on loopback, by default): publish it to your scraper only, never where Entra comes.
EXPOSE 8000 9100
# Probes /healthz where the running serve listens: its flags (PID 1's command line), then
# BRIDGE_SERVER__* and its TOML file, as serve resolves them.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s CMD ["scim-bridge", "healthcheck"]
ENTRYPOINT ["scim-bridge"]
# The address is given as flags, not ENV: a baked-in BRIDGE_SERVER__PORT would silently beat
# a mounted TOML file's [server] section.
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
