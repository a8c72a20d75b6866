# revstream worker image: slim, non-root. Build: docker build -t revstream .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY models ./models
COPY sinks ./sinks
COPY streams ./streams
RUN pip install . && useradd --create-home --uid 10001 revstream && mkdir /data && chown revstream /data
USER revstream
WORKDIR /data
ENV REVSTREAM_DATA_DIR=/data REVSTREAM_CLICKHOUSE_DSN=chdb:///data/warehouse
ENTRYPOINT ["revstream"]
CMD ["worker"]
