#!/usr/bin/env bash
# Installs jetlm's build and test dependencies on Debian/Ubuntu (needs root or sudo).
set -euo pipefail
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  g++ cmake make pkg-config libgomp1 \
  nlohmann-json3-dev libcli11-dev libpcre2-dev libutf8proc-dev \
  libgtest-dev libcpp-httplib-dev curl
# The server's end-to-end test talks to `jetlm serve` through the official OpenAI client.
if ! python3 -c "import openai" 2> /dev/null; then
  python3 -m pip install --quiet openai || python3 -m pip install --quiet --break-system-packages openai ||
    echo "install_deps: could not pip-install openai; the server end-to-end test will be skipped" >&2
fi
# The data tests compare the BPE trainer and its tokenizer.json with HF `tokenizers` (skipped without it).
if ! python3 -c "import tokenizers" 2> /dev/null; then
  python3 -m pip install --quiet tokenizers || python3 -m pip install --quiet --break-system-packages tokenizers ||
    echo "install_deps: could not pip-install tokenizers; the HF comparisons in data_tests will be skipped" >&2
fi
