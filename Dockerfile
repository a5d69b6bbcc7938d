# strictmx: a strict SMTP receiver for testing outbound mail.
#
#   docker build -t strictmx .
#   docker run --rm -p 2525:2525 -v strictmx-data:/var/lib/strictmx strictmx
#
# The journal (strictmx.db) is written to /var/lib/strictmx; mount a volume there to keep it.
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

# No HEALTHCHECK: every probe connection would be journaled as a session of its own, and
# tests read the journal.
CMD ["strictmx", "serve", "--listen", "0.0.0.0:2525"]
