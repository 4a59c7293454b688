# syntax=docker/dockerfile:1
# throttle-proxy container image. Two stages: the builder turns this source tree into wheels
# (the same PEP 517 build `pip install .` runs); the runtime stage installs only those wheels,
# so no compiler, build backend or source tree reaches the final image.

FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy ./proxy
# Wheels for the package and every dependency, so the runtime stage installs offline.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A fixed numeric uid/gid: Kubernetes can only verify runAsNonRoot against a numeric USER.
RUN groupadd --system --gid 10001 proxy \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/proxy --create-home \
       --shell /usr/sbin/nologin proxy \
    && mkdir -p /etc/throttle-proxy
COPY --from=builder /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels /wheels/throttle_proxy-*.whl \
    && rm -rf /wheels
WORKDIR /home/proxy
USER 10001:10001
# 8080: the signing proxy; 9090: admin (/metrics /healthz /readyz).
EXPOSE 8080 9090
# No curl in slim images: the interpreter that runs the proxy checks its liveness endpoint.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9090/healthz', timeout=2)"]
# Exec form: the proxy is PID 1 and receives SIGTERM itself, which starts its graceful drain.
STOPSIGNAL SIGTERM
ENTRYPOINT ["throttle-proxy"]
CMD ["run", "--config", "/etc/throttle-proxy/proxy.yaml"]
