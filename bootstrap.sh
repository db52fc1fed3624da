#!/usr/bin/env bash
# Set-up on a fresh Debian machine with Python 3.11, then start the service or run the tests.
#   ./bootstrap.sh up [dragonflow up options]   install what is missing, start the service
#   ./bootstrap.sh test [pytest options]        install what is missing, run the whole suite
set -euo pipefail
cd "$(dirname "$0")"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

debian_packages() {
  local missing=()
  command -v ffmpeg >/dev/null || missing+=(ffmpeg)
  command -v curl >/dev/null || missing+=(curl)  # the README's examples
  command -v espeak-ng >/dev/null || missing+=(espeak-ng)
  [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
  command -v npm >/dev/null || missing+=(nodejs npm)
  [ "$command" != test ] || command -v chromium >/dev/null || missing+=(chromium)  # the players test
  command -v redis-server >/dev/null || missing+=(redis-server)
  compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || missing+=(postgresql)
  python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "bootstrap: installing Debian packages: ${missing[*]}" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

python_packages() {
  [ -x .venv/bin/python ] || python3 -m venv .venv
  if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
    echo "bootstrap: installing Python packages into .venv" >&2
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
    touch .venv/.installed
  fi
}

command=${1:-}
shift || true
debian_packages
python_packages
export PREFECT_SERVER_ANALYTICS_ENABLED=false
case "$command" in
  up) exec .venv/bin/dragonflow up "$@" ;;
  test)
    # Azurite (Azure Storage emulator) for the registered-storage tests; 3.35.0 runs on Debian's Node 20.
    [ -x .azurite/node_modules/.bin/azurite-blob ] ||
      npm install --prefix .azurite --no-audit --no-fund --loglevel=error --save-exact azurite@3.35.0
    # Web players for tests/test_players.py, driven in Debian's chromium by playwright-core (all run on Node 20).
    players=(playwright-core@1.65.2 hls.js@1.7.4 dashjs@5.2.1 shaka-player@5.2.12)
    for package in "${players[@]}"; do
      [ -f ".players/node_modules/${package%@*}/package.json" ] && continue
      npm install --prefix .players --no-audit --no-fund --loglevel=error --save-exact "${players[@]}"
      break
    done
    exec .venv/bin/pytest -q "$@" ;;
  *) echo "usage: ./bootstrap.sh up|test [options]" >&2; exit 2 ;;
esac
