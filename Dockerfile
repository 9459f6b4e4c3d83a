# csale-app: ALE, C-SALE and MACM coordinate-based meta-analysis (BIDS App), CPU or NVIDIA GPU.
#
# Tag scheme (one for Dockerfile, Singularity.def, README, boutiques.json): csale-app:<version>,
# <version> = csale_app/_version.py's __version__ = --build-arg VERSION.
#   ../shared/tools/container-build csale-app:0.1.0 -- --build-arg VERSION=0.1.0   # podman
#   docker build --build-arg VERSION=0.1.0 -t csale-app:0.1.0 .
#   docker run --rm -u $(id -u):$(id -g) -v /data/in:/in:ro -v /data/out:/out csale-app:0.1.0 /in /out group
#
# Dependencies are pinned with hashes (requirements/lock-cuda12.txt, refreshed by
# requirements/refresh.sh) and installed before the code is copied, so a code change rebuilds
# only the last layers. GPU support is numba-cuda's CUDA 12 wheels (runtime, NVRTC, NVVM,
# nvJitLink; drivers >= 525); no CUDA base image: the NVIDIA container runtime (docker --gpus
# all / apptainer --nv) injects the driver. Without a GPU the app runs on CPU (numba).

ARG VERSION=0.1.0

# ---- build stage: a venv with the locked dependencies, then the package ----------------------
FROM debian:bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# 1. dependencies: this layer changes only with the lock files.
COPY requirements/lock-build.txt requirements/lock-cuda12.txt requirements/lock-nodeps.txt requirements/
RUN pip install --require-hashes --no-deps -r requirements/lock-build.txt \
 && pip install --require-hashes --no-deps --no-build-isolation -r requirements/lock-cuda12.txt \
 # SUITPy without its declared dependencies (ANTsPy etc.; see lock-nodeps.txt), and without
 # the files the flatmap does not read: templates and the isolation network (27 MB).
 && pip install --require-hashes --no-deps --no-build-isolation -r requirements/lock-nodeps.txt \
 && rm -rf /opt/venv/lib/python3.11/site-packages/SUITPy/templates \
           /opt/venv/lib/python3.11/site-packages/SUITPy/parameters \
 # nvcc's wheel brings the compiler driver and ptxas; numba-cuda needs only its libnvvm.
 && rm -rf /opt/venv/lib/python3.11/site-packages/nvidia/cuda_nvcc/bin
# 2. the package (no dependency resolution: everything it needs is in the lock).
COPY pyproject.toml README.md ./
COPY csale_app ./csale_app
# pip check: every requirement met, except those SUITPy declares and the flatmap never
# imports (installed with --no-deps on purpose: requirements/lock-nodeps.txt).
RUN pip install --no-deps --no-build-isolation --no-index . \
 && { pip check > /tmp/pip-check.txt || true; } \
 && if grep -v -e '^suitpy ' -e '^No broken requirements' /tmp/pip-check.txt | grep .; then \
      exit 1; fi \
 && rm /tmp/pip-check.txt

# ---- runtime stage: Debian's python3 + the venv, no compilers, no pip cache ------------------
FROM debian:bookworm-slim
ARG VERSION
LABEL org.opencontainers.image.title="csale-app" \
      org.opencontainers.image.description="ALE, C-SALE and MACM coordinate-based meta-analysis as a BIDS App, on CPU or NVIDIA GPU (numba-cuda, CUDA 12 wheels)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 && useradd --uid 1000 --user-group --no-create-home --home-dir /tmp \
            --shell /usr/sbin/nologin csale

COPY --from=build /opt/venv /opt/venv
COPY container/csale-app.sh /opt/csale/bin/csale-app

# The image is read-only at run time: caches go to a private per-user folder under /tmp that
# /opt/csale/bin/csale-app (first on PATH) makes and seeds from /opt/csale, and it sets
# NUMBA_CPU_NAME to one of the CPU targets compiled below (see that script).
ENV PATH=/opt/csale/bin:/opt/venv/bin:$PATH \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    NVIDIA_VISIBLE_DEVICES=all \
    CSALE_CONTAINER=csale-app:${VERSION}

# Compile the CPU kernels and build matplotlib's font list once, here: a tiny run of each
# analysis on NiMARE's pain dataset (21 experiments; 30 permutations, so --voxel-thresh 0.1
# for C-SALE), for CPU targets with fixed names (numba keys cache entries by CPU name and
# features), so that the cache fits any x86-64 host, not just the build machine:
# x86-64-v3 (AVX2) and generic x86-64, plus x86-64-v4 (AVX-512; the pain null runs ~12%
# faster than with v3) when the build machine can run it. /opt/csale/cpu-targets lists
# what was compiled; the wrapper picks the best of them that the host runs.
RUN set -e; mkdir -p /opt/csale/numba_cache /opt/csale/matplotlib /tmp/warm/in; \
    res=$(python3 -c 'from csale_app.io.templates import nimare_resource_dir as d; print(d())'); \
    cp "$res/nidm_pain_dset.json" /tmp/warm/in/pain.json; \
    export NUMBA_CACHE_DIR=/opt/csale/numba_cache MPLCONFIGDIR=/opt/csale/matplotlib; \
    run() { o=$1; shift; rm -rf "/tmp/warm/$o"; /opt/venv/bin/csale-app /tmp/warm/in \
            "/tmp/warm/$o" group --n-iters 30 --voxel-thresh 0.1 --nprocs 2 --min-experiments 5 \
            --quiet "$@"; }; \
    targets="x86-64-v3 generic"; \
    v4=yes; for f in avx512f avx512bw avx512cd avx512dq avx512vl; do \
      grep -qw "$f" /proc/cpuinfo || v4=no; done; \
    if [ "$v4" = yes ]; then targets="x86-64-v4 $targets"; fi; \
    echo "$targets" > /opt/csale/cpu-targets; \
    for cpu in $targets; do \
      export NUMBA_CPU_NAME=$cpu NUMBA_CPU_FEATURES=""; \
      run o1 --analyses ale csale --roi cerebellum; \
      run o2 --analyses csale --csale-null deterministic --subsamples 2 --roi cerebellum; \
      run o3 --analyses macm --macm-seed roi --roi-coords 0,10,40 --roi-radius 30; \
      run o4 --analyses ale --kernel-fwhm 10; \
    done; \
    python3 -c 'import matplotlib.font_manager'; \
    date -u +%Y%m%dT%H%M%SZ > /opt/csale/build-id; \
    chmod -R a+rX /opt/csale; rm -rf /tmp/warm /tmp/* 2>/dev/null || true

USER csale
WORKDIR /tmp
ENTRYPOINT ["csale-app"]
CMD ["--help"]
