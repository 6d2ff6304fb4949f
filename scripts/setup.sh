# Shared install steps for scripts/demo.sh and scripts/test.sh (sourced, not run).

setup_python() {
  local python="${PYTHON:-python3}"
  if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
  fi
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[test]"
}

apt_install() {
  # Install Debian packages that are missing; needs root (CI and the dev machines are root).
  local missing=()
  for pkg in "$@"; do
    # `dpkg -s` also succeeds for a package removed with its configuration left ("deinstall"):
    # only "install ok installed" means its files are there.
    [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = "install ok installed" ] || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null; then
    echo "note: cannot install ${missing[*]} (not root); tests that need them will say so and skip" >&2
    return 0
  fi
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

setup_system_packages() {
  # chromium: the challenge, header, biometrics and report tests drive the real browser (Playwright).
  # nginx-light and caddy: the forward-auth tests run the docs' nginx auth_request and Caddy
  # forward_auth snippets in real servers (Traefik comes from PyPI, in the test extra).
  # redis-server (with redis-tools): the Redis store tests start their own servers and a cluster.
  # openssl: the proxy's https tests make their certificates with it.
  apt_install curl wrk chromium nginx-light caddy redis-server redis-tools openssl
}
