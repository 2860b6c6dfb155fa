# One image for every Pairwise process (web, worker, beat, score server); the command picks the role.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1

WORKDIR /app
RUN useradd --create-home --uid 1000 pairwise \
    && mkdir -p /data/var /data/checkpoints && chown -R pairwise /data

# torch first and pinned, so nothing below can pull another build. Pass
# --build-arg TORCH_PIP_ARGS="--index-url <your CPU wheel index>" for a CPU-only image.
ARG TORCH_PIP_ARGS=""
RUN pip install $TORCH_PIP_ARGS "torch==2.13.0"

COPY pyproject.toml README.md ./
COPY config ./config
COPY annotation ./annotation
COPY rewardtrain ./rewardtrain
RUN pip install .

COPY manage.py ./
COPY templates ./templates
COPY static ./static
RUN DEBUG=true python manage.py collectstatic --noinput

USER pairwise
EXPOSE 8000
# gthread workers with a long timeout: streamed exports of millions of rows take minutes.
CMD ["gunicorn", "config.wsgi", "--bind", "0.0.0.0:8000", "--workers", "4", "--worker-class", "gthread", "--threads", "4", "--timeout", "300", "--access-logfile", "-"]
