# ferry as a container: `ferry serve` (REST API, metrics, the job worker) as a non-root user.
#   config: /etc/ferry/ferry.toml, mounted read-only (or FERRY_CONFIG naming another file)
#   state:  /var/lib/ferry, a volume (the SQLite store, traces, the simulated world)
#   token:  FERRY_API_TOKEN, or [api] token_file in the config
#   podman build --format docker -t ferry .   (docker build -t ferry . ; --format keeps HEALTHCHECK)
#   podman run -d -p 8080:8080 -v ./ferry.toml:/etc/ferry/ferry.toml:ro -v ferry-state:/var/lib/ferry \
#       -e FERRY_API_TOKEN ferry
# Any other verb runs instead of serve: `podman run --rm ... ferry inventory`.

# The wheel is built in its own stage, so neither the source tree nor the build tools stay.
FROM python:3.11-slim AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY fleet ./fleet
COPY planners ./planners
COPY adapters ./adapters
COPY service ./service
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
LABEL org.opencontainers.image.title="ferry" \
      org.opencontainers.image.description="Plans and runs container migrations across Proxmox VE and OpenVZ nodes" \
      org.opencontainers.image.documentation="/opt/ferry/README.md"
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FERRY_DEMO_FLEET=/opt/ferry/config/fleets/demo.yaml
# Runtime dependencies only (no test extras), in a layer that changes only with pyproject.toml; then
# ferry itself without dependencies. A fixed uid/gid, so a host directory can be chowned for the
# state volume (chown 999:999 DIR).
COPY pyproject.toml /tmp/ferry/
RUN python -c "import tomllib; print(*tomllib.load(open('/tmp/ferry/pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
        > /tmp/ferry/requirements.txt \
 && pip install --requirement /tmp/ferry/requirements.txt \
 && rm -rf /tmp/ferry \
 && groupadd --system --gid 999 ferry \
 && useradd --system --uid 999 --gid ferry --home-dir /var/lib/ferry --no-create-home \
        --shell /usr/sbin/nologin ferry \
 && install -d -o ferry -g ferry -m 0700 /var/lib/ferry \
 && install -d -m 0755 /etc/ferry
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-deps /tmp/wheels/ferry-*.whl && rm -rf /tmp/wheels
COPY README.md /opt/ferry/
COPY config /opt/ferry/config
USER ferry
WORKDIR /var/lib/ferry
VOLUME ["/var/lib/ferry"]
EXPOSE 8080
# SIGTERM: no new move starts and the moves in flight finish their step; give the container a long
# enough stop timeout (podman stop -t / docker stop -t) for the largest copy, as the systemd unit does.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["ferry"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080", "--log-format", "json"]
