#!/bin/bash
# Build the vigild .deb into dist/ from the checkout, then lint it.
#
#   packaging/build-deb.sh              (what `make deb` runs: for the host's
#                                        release; as root it installs the build
#                                        tools that are missing, with apt)
#   packaging/build-deb.sh --root DIR   for the Debian release installed in DIR,
#                                        built inside DIR (its Python, its libraries)
#   packaging/build-deb.sh --tools      print the build tools and exit
#
# The tree is staged under build/deb/vigild-VERSION with packaging/debian
# copied to debian/, and a changelog entry on top names the release: the
# package is vigild_VERSION+debN (N = the release's major version, e.g.
# 0.1.0+deb12 for bookworm, 0.1.0+deb13 for trixie), so a release upgrade
# also upgrades vigild. It is built with dpkg-buildpackage and linted:
# lintian must report no error and no warning (overrides, each with its
# reason, are in packaging/debian/vigild.lintian-overrides).
#
# With --root, DIR must have the build tools below installed (the system
# test makes such a tree with mmdebstrap, tests/system/sysharness.py). It is
# never written to: dpkg-buildpackage and lintian run in a throwaway overlay
# of DIR (a tmpfs upper layer) in private mount, pid and network namespaces,
# with the staged tree bound at /build; the namespaces, and with them every
# mount, end with the build.
set -euo pipefail
# shellcheck source=packaging/lib.sh
. "$(dirname "$0")/lib.sh"

# Build-Depends of packaging/debian/control, plus the tools run here;
# dpkg-buildpackage checks Build-Depends again, so a drift fails loudly.
TOOLS="build-essential dpkg-dev debhelper dh-python pybuild-plugin-pyproject
       python3-all-dev python3-cffi python3-setuptools python3-wheel libssl-dev
       python3-yara lintian"

ROOT=""
case "${1:-}" in
--tools)
	echo $TOOLS
	exit 0
	;;
--root)
	ROOT=$(cd "${2:?--root needs a directory}" && pwd)
	;;
"") ;;
*)
	echo "usage: $0 [--root DIR | --tools]" >&2
	exit 2
	;;
esac

# Run the shell script $1 in the tree being built for: the host, or a
# throwaway overlay of $ROOT with $STAGE bound at /build (see the top).
in_target() {
	if [ -z "$ROOT" ]; then
		(cd "$STAGE" && bash -euc "$1")
		return
	fi
	local work
	work=$(mktemp -d)
	# shellcheck disable=SC2016  # expanded by the inner bash
	unshare --mount --pid --net --fork --kill-child -- bash -euc '
		root=$1 stage=$2 work=$3 script=$4
		mount --make-rprivate /
		mount -t tmpfs -o mode=755 vigild-build "$work"
		mkdir "$work/upper" "$work/work" "$work/root"
		mount -t overlay overlay \
			-o "lowerdir=$root,upperdir=$work/upper,workdir=$work/work" "$work/root"
		mount -t proc proc "$work/root/proc"
		mount --rbind /dev "$work/root/dev"
		mkdir -p "$work/root/build"
		mount --bind "$stage" "$work/root/build"
		exec chroot "$work/root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
			LC_ALL=C.UTF-8 HOME=/root DEBIAN_FRONTEND=noninteractive \
			bash -euc "cd /build && $script"
	' sh "$ROOT" "$STAGE" "$work" "$1" || {
		local rc=$?
		rmdir "$work"
		return $rc
	}
	rmdir "$work"
}

# Put an entry for version $2 in distribution $3, saying $4, on top of the
# changelog $1, signed as the entry below it.
release_changelog_entry() {
	local log=$1 maintainer old
	maintainer=$(dpkg-parsechangelog -l "$log" -S Maintainer)
	old=$(cat "$log")
	{
		printf 'vigild (%s) %s; urgency=medium\n\n  * %s\n\n' "$2" "$3" "$4"
		printf ' -- %s  %s\n\n%s\n' "$maintainer" "$(date -R)" "$old"
	} >"$log"
}

if [ -z "$ROOT" ]; then
	# shellcheck disable=SC2086
	apt_install_missing $TOOLS git
else
	apt_install_missing dpkg-dev git # staging and the version check run here
	missing=""
	for p in $TOOLS; do
		dpkg-query --admindir="$ROOT/var/lib/dpkg" -W -f='${Status}\n' "$p" 2>/dev/null |
			grep -q '^install ok installed' || missing="$missing $p"
	done
	if [ -n "$missing" ]; then
		echo "$0: $ROOT lacks the build tools:$missing" >&2
		exit 1
	fi
fi

# The release built for, from its os-release: "12 bookworm", "13 trixie".
# shellcheck disable=SC1091
read -r RELEASE CODENAME < <(. "${ROOT}/etc/os-release" && echo "${VERSION_ID:-} ${VERSION_CODENAME:-}")
if [ -z "$RELEASE" ] || [ -z "$CODENAME" ]; then
	echo "$0: ${ROOT:-the host} is not a numbered Debian release (no VERSION_ID in its os-release)" >&2
	exit 1
fi

UPSTREAM=$(project_version "$(dpkg-parsechangelog -l "$REPO/packaging/debian/changelog" -S Version)")
VERSION=$UPSTREAM+deb$RELEASE
STAGE=$BUILD/deb
SRC=$STAGE/vigild-$VERSION
rm -rf "$STAGE"
stage_tree "$SRC"
cp -a "$REPO/packaging/debian" "$SRC/debian"
release_changelog_entry "$SRC/debian/changelog" "$VERSION" "$CODENAME" \
	"Built for Debian $RELEASE ($CODENAME)."

ARCH=$(dpkg --print-architecture)
DEB=vigild_${VERSION}_${ARCH}.deb
echo "build-deb: building $DEB${ROOT:+ inside $ROOT}"
in_target "cd vigild-$VERSION && dpkg-buildpackage -us -uc -b"
mkdir -p "$DIST"
cp "$STAGE/$DEB" "$DIST/"
echo "build-deb: built $DIST/$DEB"

echo "build-deb: lintian"
in_target "lintian --fail-on error,warning --display-info vigild_${VERSION}_${ARCH}.changes"
echo "build-deb: lintian: no errors, no warnings"
