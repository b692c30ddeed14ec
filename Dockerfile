# The Warden worker image (docker-compose.yml's `worker`). Local development without
# Docker uses scripts/services.py instead.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md* ./
COPY detectors ./detectors
COPY projections ./projections
COPY streams ./streams
RUN pip install . \
 && useradd --system --uid 10001 --home-dir /var/lib/warden --create-home warden

USER warden
WORKDIR /var/lib/warden
ENV WARDEN_WEB_HOST=0.0.0.0 \
    WARDEN_WEB_PORT=6066 \
    WARDEN_DATA_DIR=/var/lib/warden/data
EXPOSE 6066
CMD ["warden", "worker"]
