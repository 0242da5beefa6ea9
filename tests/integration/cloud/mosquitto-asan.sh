#!/bin/sh
# `make sanitize` links this as "mosquitto" into a directory it puts first in PATH: the stand-in then
# starts the real broker with the sanitizer runtimes preloaded (ASan first, as it must be; stdbuf's own
# preload follows), so an AddressSanitizer build of the broker plugin runs inside a real mosquitto.
# ASAN_OPTIONS / UBSAN_OPTIONS come from make.
real="${NRFPROV_REAL_MOSQUITTO:-/usr/sbin/mosquitto}"
if [ "$(readlink -f "$real")" = "$(readlink -f "$0")" ]; then
    echo "mosquitto-asan.sh: NRFPROV_REAL_MOSQUITTO points at this wrapper" >&2
    exit 1
fi
LD_PRELOAD="${NRFPROV_SANITIZER_PRELOAD}${LD_PRELOAD:+ $LD_PRELOAD}" exec "$real" "$@"
