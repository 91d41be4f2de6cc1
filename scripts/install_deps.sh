#!/usr/bin/env bash
# Installs jetlm's build and test dependencies on Debian/Ubuntu (needs root or sudo).
set -euo pipefail
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  g++ cmake make pkg-config libgomp1 \
  nlohmann-json3-dev libcli11-dev libpcre2-dev libutf8proc-dev \
  libgtest-dev
