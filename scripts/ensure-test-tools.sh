#!/usr/bin/env bash
# Installs the system tools some tests use, where this machine allows it:
#   docker-compose (validates docker-compose.yml; the Debian package)
#   chromium       (headless browser for the web-page tests, driven by Playwright)
# On a laptop without root or apt this only prints what is missing; those tests then skip
# (CI sets BRAINMRI_REQUIRE_SERVICES=1, which turns such skips into failures).
set -u
missing=()
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing test tools: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || echo "warning: could not install ${missing[*]}; the tests that need them will skip"
else
  echo "note: ${missing[*]} not installed (needs root + apt); the tests that need them will skip"
fi
exit 0
