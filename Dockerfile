# scim-bridge: a production image (no test dependencies), running as a non-root user.
# Build: docker build -t scim-bridge .
# Run:   docker run -p 8000:8000 -e BRIDGE_SCIM__TOKENS='["..."]' \
#          -e BRIDGE_MODYO__BASE_URL=https://acme.modyo.cloud -e BRIDGE_MODYO__TOKEN=... scim-bridge
FROM python:3.12-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bridge ./bridge
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BRIDGE_SERVER__HOST=0.0.0.0 \
    BRIDGE_SERVER__PORT=8000
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin bridge
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl \
    && rm -rf /wheels
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)"]
ENTRYPOINT ["scim-bridge"]
CMD ["serve"]
