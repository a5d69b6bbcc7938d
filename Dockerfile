# strictmx: a strict SMTP receiver for testing outbound mail.
#
#   docker build -t strictmx .
#   docker run --rm -p 2525:2525 -p 127.0.0.1:8025:8025 -e STRICTMX_API_TOKEN=... \
#       -v strictmx-data:/var/lib/strictmx strictmx
#
# The journal (strictmx.db) is written to /var/lib/strictmx; mount a volume there to keep it.
# The HTTP API listens on 8025 beside SMTP; give it a token in $STRICTMX_API_TOKEN (serve
# reads it from there, never from argv). Clients come through Docker's bridge, not from
# 127.x: see the README's "Docker" section for --trusted and world.clients.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --user-group --no-create-home --shell /usr/sbin/nologin strictmx \
    && install -d -o strictmx -g strictmx -m 0750 /var/lib/strictmx

# The same install as the README's: the project and its dependencies from pyproject.toml.
COPY . /tmp/strictmx
RUN pip install --no-cache-dir /tmp/strictmx && rm -rf /tmp/strictmx

USER strictmx
WORKDIR /var/lib/strictmx

# 2525: SMTP. 8025: the HTTP API.
EXPOSE 2525 8025

# The API's health endpoint, never SMTP: an SMTP probe would be journaled as a session of
# its own. /api/v1/health needs no token; "degraded" (journal writes failing, the world's
# DNS unreachable) counts as unhealthy. Python's urllib: the image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import json, sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:8025/api/v1/health', timeout=4); sys.exit(json.load(r)['status'] != 'ready')"]

CMD ["strictmx", "serve", "--listen", "0.0.0.0:2525", "--api-listen", "0.0.0.0:8025"]
