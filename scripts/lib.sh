# Shared by scripts/run and scripts/test: find Python 3.11-3.13, make the venv, install what is missing.
# Sourced, not run. Every step checks first, so a second run costs seconds.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root for: $*" >&2; return 1; fi
}

APT_UPDATED=""
apt_install() {
  # apt_install PACKAGE... : install the Debian packages that are not installed yet.
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing Debian packages: ${missing[*]}"
  if [ -z "$APT_UPDATED" ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

find_python() {
  # Tested on 3.11 (preferred when present); 3.12 and 3.13 are accepted.
  local candidate
  for candidate in python3.11 python3.13 python3.12 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' 2>/dev/null; then
      command -v "$candidate"; return 0
    fi
  done
  local found="no python3 on PATH"
  command -v python3 >/dev/null && found="python3 is $(python3 --version 2>&1)"
  echo "Trygg needs Python 3.11, 3.12 or 3.13 as python3.11, python3.12, python3.13 or python3 ($found)" >&2
  return 1
}

ensure_venv() {
  # ensure_venv [EXTRA] : a venv with the project installed (editable), plus extras.
  local extra="${1:-}" spec="$ROOT" python stamp want
  [ -n "$extra" ] && spec="$ROOT[$extra]"
  python="$(find_python)"
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating the virtualenv in .venv"
    if ! "$python" -m venv "$VENV" 2>/dev/null; then
      apt_install python3-venv
      rm -rf "$VENV"; "$python" -m venv "$VENV"
    fi
  fi
  stamp="$VENV/.trygg-installed"
  want="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)-$extra"
  if [ ! -f "$stamp" ] || ! grep -qx -- "$want" "$stamp"; then
    say "installing Trygg and its dependencies into .venv"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q -e "$spec"
    echo "$want" > "$stamp"
  fi
}
