#!/usr/bin/env bash
# Browser tests drive Debian's Chromium through Playwright (no browser download).
# Installs it when missing and we may (root); otherwise browser tests skip with a note.
set -u
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "could not install chromium: browser tests will be skipped" >&2
else
  echo "chromium is not installed (sudo apt-get install chromium): browser tests will be skipped" >&2
fi
exit 0
