#!/usr/bin/env bash
# Installs Debian's PostgreSQL server binaries for the study's tests (tests/study/postgres.py starts a
# throw-away server from them on a Unix socket; nothing listens on TCP, no system service is used).
set -euo pipefail

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql
fi
ls -d /usr/lib/postgresql/*/bin | tail -1
echo "study tests: PostgreSQL ready"
