#!/bin/sh
# Unpack secrets and artefacts handed over as base64 by the CI system.
echo "$TLS_CERT_B64" | base64 -d > /etc/app/tls.pem
base64 -d /run/ci/artefact.b64 | tar xz -C /srv/app
echo aGVsbG8gd29ybGQ= | base64 -d
echo "VGhpcyBpcyBhIGxvbmcgYmFzZTY0IGJsb2IgdGhhdCBpcyBkZWNvZGVkIGludG8gYSBmaWxl" | base64 -d > /srv/app/motd
