#!/bin/sh
# The image's entrypoint: empties the Prometheus multiprocess directory when one is set (the values a
# previous run left there would be counted again, and a crashed worker's gauges never leave the sums),
# then runs the command in its place (exec: it receives the container's signals itself).
set -eu
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
  mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
  find "$PROMETHEUS_MULTIPROC_DIR" -mindepth 1 -delete
fi
exec "$@"
