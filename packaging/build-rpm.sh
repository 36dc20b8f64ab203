#!/bin/bash
# Build the vigild .rpm (and its source rpm) into dist/, then lint them.
#
#   packaging/build-rpm.sh      (what `make rpm` runs; as root it installs
#                                the build tools that are missing, with apt)
#
# This runs on Debian: rpmbuild --nodeps (the rpm database is empty, the
# BuildRequires name Fedora packages), and the spec carries fallbacks for
# the distribution macros Debian's rpm lacks. rpmlint must report no error
# and no warning; packaging/rpm/vigild.rpmlintrc says why each filtered
# message does not apply. No RPM distribution can be booted here: the .rpm
# is built, linted and unpacked (tests/system), not install-tested.
set -euo pipefail
# shellcheck source=packaging/lib.sh
. "$(dirname "$0")/lib.sh"

TOOLS="build-essential rpm rpmlint elfutils python3-build python3-installer python3-cffi
       python3-setuptools python3-wheel libssl-dev git"
# shellcheck disable=SC2086
apt_install_missing $TOOLS

SPEC=$REPO/packaging/rpm/vigild.spec
VERSION=$(project_version "$(rpmspec -q --srpm --qf '%{version}' "$SPEC" 2>/dev/null)")
STAGE=$BUILD/rpm
rm -rf "$STAGE"
mkdir -p "$STAGE"/{SOURCES,SPECS,BUILD,RPMS,SRPMS,tree}
stage_tree "$STAGE/tree/vigild-$VERSION"
tar -C "$STAGE/tree" --owner=0 --group=0 --sort=name -czf "$STAGE/SOURCES/vigild-$VERSION.tar.gz" "vigild-$VERSION"
cp "$SPEC" "$STAGE/SPECS/"

# Debian's rpm ships brp-compress with "#!/bin/sh" but bash syntax (read -d):
# under dash it compresses no manual page. Run it with bash.
rpmbuild -ba --nodeps --define "_topdir $STAGE" \
	--define '__brp_compress /bin/bash %{_rpmconfigdir}/brp-compress %{?_prefix}' \
	"$STAGE/SPECS/vigild.spec"

mkdir -p "$DIST"
RPM=$(find "$STAGE/RPMS" -name "vigild-$VERSION-*.rpm" ! -name '*debug*' | head -n1)
SRPM=$(find "$STAGE/SRPMS" -name "vigild-$VERSION-*.src.rpm" | head -n1)
cp "$RPM" "$SRPM" "$DIST/"
echo "build-rpm: built $DIST/$(basename "$RPM") $DIST/$(basename "$SRPM")"

echo "build-rpm: rpmlint"
rpmlint -r "$REPO/packaging/rpm/vigild.rpmlintrc" "$SPEC" "$SRPM" "$RPM"
echo "build-rpm: rpmlint: no errors, no warnings"
