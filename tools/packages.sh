# The system packages the switch and its tests need, in one place; sourced by `tools/serve`
# and `tools/test`. Each need is a check and the Debian package that satisfies it.
#
#   run:  espeak-ng   text to speech for every `talk` prompt (a child process, not linked:
#                     espeak-ng is GPL-3.0; see README "Text to speech").
#         libpocketsphinx3 pocketsphinx-en-us   speech recognition, loaded at run time (README
#                     "Speech recognition").
#   test: the above, and
#         python3 with venv   the suite makes virtual environments of real Python peers (grpcio)
#                             and of Playwright, which drives Debian's Chromium.
#         chromium            that browser (/usr/bin/chromium; Playwright downloads none).
#         sip-tester          SIPp, the SIP peer of the SIP tests (callers, called sides, load).
#         baresip-core        baresip, a second, independent SIP user agent for interop.
#         nginx               the load balancer in front of two switches in the cluster tests.

# Prints the Debian packages missing for `$1` (run or test), space-separated.
missing_packages() {
  local missing=()
  command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
  # Speech recognition: loaded at run time (the switch runs without it; speech actions then
  # say which packages are missing).
  ldconfig -p 2>/dev/null | grep -q 'libpocketsphinx\.so\.3 ' || missing+=(libpocketsphinx3)
  [[ -d /usr/share/pocketsphinx/model/en-us/en-us ]] || missing+=(pocketsphinx-en-us)
  if [[ $1 == test ]]; then
    [[ -x /usr/bin/chromium ]] || missing+=(chromium)
    command -v sipp >/dev/null 2>&1 || missing+=(sip-tester)
    command -v baresip >/dev/null 2>&1 || missing+=(baresip-core)
    [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
    if ! command -v python3 >/dev/null 2>&1; then
      missing+=(python3 python3-venv)
    elif ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
      missing+=(python3-venv)
    fi
  fi
  echo "${missing[*]}"
}

# Installs the packages missing for `$1` when it can (root, or passwordless sudo, with
# apt-get); otherwise prints the exact install line and returns 1.
ensure_packages() {
  local missing
  read -r -a missing <<<"$(missing_packages "$1")"
  ((${#missing[@]})) || return 0
  local install=(apt-get install -y -qq "${missing[@]}")
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      sudo=(sudo)
    else
      sudo=(none)
    fi
  fi
  if [[ ${sudo[0]:-} == none ]] || ! command -v apt-get >/dev/null; then
    echo "switchboard needs: ${missing[*]}" >&2
    echo "install them with: sudo ${install[*]}" >&2
    return 1
  fi
  echo "installing: ${missing[*]}" >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive "${install[@]}" >/dev/null
}
