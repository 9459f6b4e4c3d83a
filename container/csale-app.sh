#!/bin/sh
# csale-app inside the image (Docker/Podman/Apptainer): first on PATH, then the real app.
#
# The image is read-only and /tmp may be shared by every user of a host (Apptainer binds the
# host's /tmp), so caches go to a private per-user folder, ${TMPDIR:-/tmp}/csale-cache-<uid>
# (mode 700, used only when this user owns it and nobody else can write to it; otherwise a
# fresh private folder). On first use it is seeded with what the image build compiled:
#   numba: the kernels' cache, so that a fresh container does not JIT-compile them again;
#          where the cache does not fit (other CPU, other code) numba compiles as usual
#          (its index keys each entry by signature, CPU target and source stamp);
#   matplotlib: the font list, so that no font-cache line is printed.
# NUMBA_CACHE_DIR / MPLCONFIGDIR set by the caller are respected (and not seeded). Without a
# usable cache folder numba and matplotlib fall back to their own defaults (slower start only).
opt=${CSALE_IMAGE_ROOT:-/opt}  # the image's /opt (another root only in the tests)
uid=$(id -u)
# The kernels were compiled at build time for the CPU targets listed in
# $opt/csale/cpu-targets: x86-64-v3 (AVX2, FMA, BMI2: most x86 servers since 2015), generic
# x86-64 and, when the build machine had AVX-512, x86-64-v4. Pick the best listed target
# this CPU runs, so that the cache fits. NUMBA_CPU_NAME set by the caller is respected;
# CSALE_CPU_TARGET=host leaves the choice to numba: kernels for this very CPU, compiled on
# first use, then cached.
has_all() {  # $1: the CPU's flags; the rest: flags that must all be there
  f=" $1 "; shift
  for want in "$@"; do case $f in *" $want "*) ;; *) return 1 ;; esac; done
}
if [ "${CSALE_CPU_TARGET:-}" = host ]; then
  unset NUMBA_CPU_NAME NUMBA_CPU_FEATURES
elif [ -z "${NUMBA_CPU_NAME:-}" ]; then
  flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null)
  targets=$(cat "$opt/csale/cpu-targets" 2>/dev/null || echo "x86-64-v3 generic")
  pick=generic
  for t in $targets; do
    case $t in
      x86-64-v4) has_all "$flags" avx avx2 bmi1 bmi2 f16c fma movbe xsave abm avx512f \
                   avx512bw avx512cd avx512dq avx512vl && { pick=$t; break; } ;;
      x86-64-v3) has_all "$flags" avx avx2 bmi1 bmi2 f16c fma movbe xsave abm \
                   && { pick=$t; break; } ;;
    esac
  done
  if [ "$pick" = generic ]; then
    export NUMBA_CPU_NAME=generic
  else
    export NUMBA_CPU_NAME=$pick NUMBA_CPU_FEATURES=""
  fi
fi
root=${TMPDIR:-/tmp}
cache=${CSALE_CACHE_DIR:-$root/csale-cache-$uid}
private() {  # $1 is a folder of this user that no one else can write to
  [ -d "$1" ] && [ -O "$1" ] && [ -w "$1" ] || return 1
  case $(stat -c %A "$1" 2>/dev/null) in d????-??-?) return 0 ;; *) return 1 ;; esac
}
mkdir -p -m 700 "$cache" 2>/dev/null
if ! private "$cache"; then
  cache=$(mktemp -d "$root/csale-cache-$uid.XXXXXX" 2>/dev/null) || cache=""
fi
# One cache folder per image build: a new image never reads an older image's kernels.
build=$(cat "$opt/csale/build-id" 2>/dev/null || echo unknown)
seed() {  # copy seed folder $1 to $2 unless $2 exists; atomic (concurrent runs are safe)
  [ -d "$2" ] && return 0
  if [ -d "$1" ] && tmp=$(mktemp -d "$2.XXXXXX" 2>/dev/null); then
    if cp -R "$1/." "$tmp/" 2>/dev/null && mv -T "$tmp" "$2" 2>/dev/null; then return 0; fi
    rm -rf "$tmp"
  fi
  mkdir -p "$2" 2>/dev/null
  return 0
}
if [ -n "$cache" ]; then
  if [ -z "${NUMBA_CACHE_DIR:-}" ]; then
    NUMBA_CACHE_DIR=$cache/numba-$build
    seed "$opt/csale/numba_cache" "$NUMBA_CACHE_DIR"
    export NUMBA_CACHE_DIR
  fi
  if [ -z "${MPLCONFIGDIR:-}" ]; then
    MPLCONFIGDIR=$cache/matplotlib-$build
    seed "$opt/csale/matplotlib" "$MPLCONFIGDIR"
    export MPLCONFIGDIR
  fi
fi
exec "$opt/venv/bin/csale-app" "$@"
