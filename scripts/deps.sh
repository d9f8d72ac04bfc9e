#!/usr/bin/env bash
# Installs natbus' dependencies from Debian packages (bookworm). Idempotent: installs only what
# is missing, and runs `apt-get update` first when it installs anything.
#   scripts/deps.sh build   what building natbus and running the example needs
#   scripts/deps.sh test    that, plus what the test suite needs (default)
set -euo pipefail
profile=${1:-test}
build_pkgs=(build-essential cmake ninja-build pkg-config ca-certificates
            libnats-dev nats-server nlohmann-json3-dev libfmt-dev zlib1g-dev libssl-dev)
test_pkgs=(clang libclang-rt-14-dev libgtest-dev libgmock-dev openssl python3 python3-yaml
           golang-go golang-github-nats-io-go-nats-dev golang-github-nats-io-jwt-dev clang-format clang-tidy doxygen)
pkgs=("${build_pkgs[@]}")
[[ "$profile" == "test" ]] && pkgs+=("${test_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "deps: all ${#pkgs[@]} packages present"
  exit 0
fi
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
echo "deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
