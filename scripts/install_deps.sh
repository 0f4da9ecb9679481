#!/usr/bin/env bash
# Installs the distribution packages llava.c builds against (Debian/Ubuntu).
# Does nothing when everything is already present. Safe to run repeatedly.
#   cJSON, HDF5 (serial), OpenBLAS (OpenMP variant: its threads and ours share
#   one pool instead of oversubscribing the cores), OpenMP (from gcc),
#   libjpeg-turbo, libpng, giflib, libarchive (WebDataset tars), PCRE2 and
#   utf8proc (byte-level BPE: Split regexes, NFC), OpenMPI, and the build tools; libcurl (the chat-completions client of llava datagen /
#   judge); libmicrohttpd (llava serve's HTTP server), curl and jq (its tests),
#   and chromium + chromium-driver (the headless browser test of its chat page);
#   iproute2 and util-linux (the two-host launch test over network namespaces).
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libcjson-dev
  libhdf5-dev
  libopenblas-openmp-dev
  libjpeg-dev libpng-dev libgif-dev
  libarchive-dev
  libpcre2-dev libutf8proc-dev
  libopenmpi-dev openmpi-bin
  libcurl4-openssl-dev
  libmicrohttpd-dev curl jq
  chromium chromium-driver
  iproute2 util-linux
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all packages present"
  exit 0
fi

echo "install_deps: installing ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
