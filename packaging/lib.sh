# shellcheck shell=bash
# Shell functions shared by build-deb.sh and build-rpm.sh (sourced).

# Debian's tools with Debian's python3: a pyenv python3 first on PATH makes
# pybuild fail with "No module named build".
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Where packages land and where they are built; the system test points
# both elsewhere so that it never touches the checkout's dist/ and build/.
# shellcheck disable=SC2034  # used by the scripts that source this
DIST=${VIGILD_DIST_DIR:-$REPO/dist}
# shellcheck disable=SC2034
BUILD=${VIGILD_BUILD_DIR:-$REPO/build}
# Exit status when the build tools could not be installed (no network to
# the package registry, most likely); the system test skips on it.
EXIT_NO_TOOLS=75

# Install, with apt, the packages named in $* that are not installed yet.
apt_install_missing() {
	local missing="" p
	for p in "$@"; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' ||
			missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	if [ "$(id -u)" != 0 ]; then
		echo "$0: run as root to install:$missing" >&2
		exit 1
	fi
	echo "$0: installing:$missing"
	# shellcheck disable=SC2086
	if ! apt-get update -qq || ! apt-get install -y -qq --no-install-recommends $missing >/dev/null; then
		echo "$0: could not install:$missing" >&2
		exit "$EXIT_NO_TOOLS"
	fi
}

# The version in pyproject.toml; fails unless $1 (a packaging file's
# version) is the same.
project_version() {
	local py
	py=$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/pyproject.toml")
	if [ "$1" != "$py" ]; then
		echo "$0: packaging says version $1, pyproject.toml says $py" >&2
		exit 1
	fi
	echo "$py"
}

# Copy the packaged tree to directory $1: what git tracks plus untracked
# files that are not ignored, as they are in the working tree (a fresh
# clone builds HEAD; local edits are packaged as they are).
stage_tree() {
	local dest=$1
	mkdir -p "$dest"
	# shellcheck disable=SC2016  # "$f" belongs to the inner sh
	git -C "$REPO" ls-files -z --cached --others --exclude-standard |
		(cd "$REPO" && xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh) |
		tar -C "$REPO" --null -T - -cf - | tar -C "$dest" -xf -
}
