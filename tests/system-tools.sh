#!/usr/bin/env bash
# The system tools the test suite uses, installed when missing: Chromium (the report's
# render test), GNU make (the example-pipeline tests) and groff (the man pages' troff check). Debian/Ubuntu's apt-get, as root
# or through sudo; elsewhere it says what to install and fails (a missing tool fails its
# tests: only absent hardware is skipped).
set -euo pipefail
missing=""
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing="$missing chromium"
command -v make >/dev/null 2>&1 || missing="$missing make"
command -v groff >/dev/null 2>&1 || missing="$missing groff"
[ -z "$missing" ] && exit 0
if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "system-tools: installing$missing" >&2
  $sudo apt-get update -qq && $sudo apt-get install -y -qq $missing >/dev/null
else
  echo "system-tools: install$missing (the report render test and the example pipeline need them)" >&2
  exit 1
fi
