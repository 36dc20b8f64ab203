#!/bin/bash
# Build the vigild .deb into dist/ from the checkout, then lint it.
#
#   packaging/build-deb.sh      (what `make deb` runs; as root it installs
#                                the build tools that are missing, with apt)
#
# The tree is staged under build/deb/vigild-VERSION with packaging/debian
# copied to debian/, built with dpkg-buildpackage, and linted: lintian must
# report no error and no warning (overrides, each with its reason, are in
# packaging/debian/vigild.lintian-overrides).
set -euo pipefail
# shellcheck source=packaging/lib.sh
. "$(dirname "$0")/lib.sh"

# Build-Depends of packaging/debian/control, plus the tools run here;
# dpkg-buildpackage checks Build-Depends again, so a drift fails loudly.
TOOLS="build-essential dpkg-dev debhelper dh-python pybuild-plugin-pyproject
       python3-all-dev python3-cffi python3-setuptools python3-wheel libssl-dev
       python3-yara lintian git"
# shellcheck disable=SC2086
apt_install_missing $TOOLS

VERSION=$(project_version "$(dpkg-parsechangelog -l "$REPO/packaging/debian/changelog" -S Version)")
STAGE=$BUILD/deb
SRC=$STAGE/vigild-$VERSION
rm -rf "$STAGE"
stage_tree "$SRC"
cp -a "$REPO/packaging/debian" "$SRC/debian"

(cd "$SRC" && dpkg-buildpackage -us -uc -b)

ARCH=$(dpkg --print-architecture)
mkdir -p "$DIST"
cp "$STAGE/vigild_${VERSION}_${ARCH}.deb" "$DIST/"
echo "build-deb: built $DIST/vigild_${VERSION}_${ARCH}.deb"

echo "build-deb: lintian"
lintian --fail-on error,warning --display-info "$STAGE/vigild_${VERSION}_${ARCH}.changes"
echo "build-deb: lintian: no errors, no warnings"
