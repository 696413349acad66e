# ferry as a container: slim Python 3.11, installed as a package, run as a non-root user.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    FERRY_DEMO_FLEET=/opt/ferry/config/fleets/demo.yaml
WORKDIR /opt/ferry
COPY pyproject.toml README.md ./
COPY fleet ./fleet
COPY planners ./planners
COPY adapters ./adapters
COPY service ./service
COPY config ./config
RUN pip install --no-cache-dir . \
 && useradd --system --create-home --home-dir /var/lib/ferry ferry
USER ferry
WORKDIR /var/lib/ferry
ENTRYPOINT ["ferry"]
CMD ["--help"]
