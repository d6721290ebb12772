#!/usr/bin/env bash
# System packages the product and its tests need (Debian). Idempotent; quiet when all present.
# Java 17 and Maven (Kafka from Maven Central), Go (the S3 test server) come with the machine.
set -euo pipefail
need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v sox >/dev/null || need+=(sox)
command -v ffmpeg >/dev/null || need+=(ffmpeg)  # decodes and checks a CAP alert's own audio (consumers/loudspeaker/cap_audio.py)
command -v openssl >/dev/null || need+=(openssl)  # test certificates for the SSL / SASL_SSL brokers (infra/local/kafka/tls.py)
command -v promtool >/dev/null || need+=(prometheus)
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
command -v chromium >/dev/null || need+=(chromium)
dpkg -s fonts-noto-core >/dev/null 2>&1 || need+=(fonts-noto-core)
if [ ${#need[@]} -gt 0 ]; then
  echo "system-deps: installing ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
