# One image for every fixstream process (worker, simulator, one-shot commands).
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY fixstream ./fixstream
RUN pip install --no-cache-dir -e .
ENV FIXSTREAM_DATA_DIR=/data FIXSTREAM_WEB_HOST=0.0.0.0
ENTRYPOINT ["fixstream"]
CMD ["worker"]
