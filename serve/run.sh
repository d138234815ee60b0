#!/bin/sh
# The fastest single-node set-up measured (docs/serving.md, bench/results/serve_probe.json):
# Serve's throughput-optimised mode (user code and routing on the replica's event loop, gRPC
# between deployments, direct ingress) with HAProxy serving port 8000 instead of Serve's
# Python proxy. Both variables must be in the environment of the process that starts Ray, so
# they cannot live in serve/config.yaml. Run from the repo root (the config's paths are
# relative to it); extra arguments go to `serve run`:
#   sh serve/run.sh                 # then http://127.0.0.1:8000/docs
#   sh serve/run.sh --non-blocking
# HAProxy also replays a request whose ingress replica died before answering (no answer, or a
# broken one) instead of answering Serve's plain 500 (docs/serving.md, "Errors"): every POST
# carries an event id, so a replay is answered from the first and never applied twice; up to
# 10 tries, about a second apart, while Serve restarts the replica (bench/serve_kill.py).
# A variable already set in the environment wins (e.g. RAY_SERVE_ENABLE_HA_PROXY=0 sh serve/run.sh);
# GLAN_RAY_SERVE_CONFIG names another config file.
export RAY_SERVE_THROUGHPUT_OPTIMIZED="${RAY_SERVE_THROUGHPUT_OPTIMIZED:-1}"
export RAY_SERVE_ENABLE_HA_PROXY="${RAY_SERVE_ENABLE_HA_PROXY:-1}"
export RAY_SERVE_HAPROXY_RETRY_ON="${RAY_SERVE_HAPROXY_RETRY_ON:-conn-failure empty-response junk-response}"
export RAY_SERVE_HAPROXY_RETRIES="${RAY_SERVE_HAPROXY_RETRIES:-10}"
exec serve run "${GLAN_RAY_SERVE_CONFIG:-$(dirname "$0")/config.yaml}" "$@"
