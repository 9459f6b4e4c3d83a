# csale-app: ALE, C-SALE and MACM coordinate-based meta-analysis (BIDS App), CPU or NVIDIA GPU.
#
#   docker build --build-arg VERSION=0.1.0 -t csale-app:0.1.0 .
#   docker run --rm --gpus all -v /data/in:/in:ro -v /data/out:/out csale-app:0.1.0 /in /out group
#
# GPU support comes from pip wheels only (CuPy with its CUDA toolkit wheels, numba-cuda), all
# of ONE CUDA major: 12 (runs on drivers >= 525; CUDA 13 would need >= 580). No CUDA base image
# is needed: the NVIDIA container runtime (docker --gpus all / apptainer --nv) injects the
# driver (libcuda) and the wheels bring the rest. Without a GPU the app runs on CPU (numba).

ARG VERSION=0.1.0

# ---- build stage: a venv with the package and its dependencies (wheels only) ----------------
FROM debian:bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY csale_app ./csale_app
RUN pip install --no-cache-dir --upgrade pip \
 && pip install --no-cache-dir ".[cuda]" \
 && pip check

# ---- runtime stage: Debian's python3 + the venv, no compilers, no pip cache ------------------
FROM debian:bookworm-slim
ARG VERSION
LABEL org.opencontainers.image.title="csale-app" \
      org.opencontainers.image.description="ALE, C-SALE and MACM coordinate-based meta-analysis as a BIDS App, on CPU or NVIDIA GPU (CUDA 12 wheels)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://pypi.org/project/csale-app/" \
      org.opencontainers.image.licenses="MIT"

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 && useradd --uid 1000 --user-group --no-create-home --home-dir /tmp \
            --shell /usr/sbin/nologin csale

COPY --from=build /opt/venv /opt/venv

# Caches under /tmp: /opt/venv is read-only for the non-root user (and in Apptainer images).
ENV PATH=/opt/venv/bin:$PATH \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    NUMBA_CACHE_DIR=/tmp/numba_cache \
    CUPY_CACHE_DIR=/tmp/cupy_cache \
    MPLCONFIGDIR=/tmp/matplotlib \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    NVIDIA_VISIBLE_DEVICES=all \
    CSALE_CONTAINER=csale-app:${VERSION}

USER csale
WORKDIR /tmp
ENTRYPOINT ["csale-app"]
CMD ["--help"]
