# outcall: API + scheduler + gateway + models in one process.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    OUTCALL_MODELS_DIR=/opt/outcall/models OUTCALL_DB=/data/outcall.db OUTCALL_DIALPLANS_DIR=/data/dialplans

# sox/espeak-ng for audio tools and the TTS fallback; nodejs+npm only to unpack the Kokoro voices at build.
RUN apt-get update \
 && apt-get install -y --no-install-recommends sox espeak-ng libsndfile1 nodejs npm curl \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/outcall
COPY pyproject.toml README.md ./
COPY engine engine
COPY gateway gateway
COPY models models
COPY dialplans dialplans
COPY outcall outcall
# torch first and alone, pinned: pass PIP_INDEX_URL/PIP_EXTRA_INDEX_URL for its CPU-only build
RUN pip install --upgrade pip && pip install torch==2.13.0 && pip install '.[speech,nlu]' \
 && python -m models.install --dest /opt/outcall/models \
 && apt-get purge -y npm && apt-get autoremove -y

RUN useradd --create-home --uid 10001 outcall && mkdir -p /data && chown outcall /data
USER outcall
VOLUME ["/data"]
# SIP signalling (UDP/TCP) and the API; RTP uses OUTCALL_RTP_PORTS (default 20000-30000/udp).
EXPOSE 5060/udp 5060/tcp 8080/tcp
ENV OUTCALL_SIP_BIND=0.0.0.0:5060
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
CMD ["outcall", "serve", "--host", "0.0.0.0", "--port", "8080"]
