#!/bin/bash
# Provisioning: tools into /usr/local/bin, a source build under /tmp.
set -euo pipefail
curl -fsSLo /usr/local/bin/kubectl "https://dl.k8s.io/release/v1.30.0/bin/linux/amd64/kubectl"
chmod +x /usr/local/bin/kubectl
kubectl version --client

tmpdir=$(mktemp -d)
curl -fsSL -o "$tmpdir/tool" https://downloads.example.org/tool
chmod +x "$tmpdir/tool"
"$tmpdir/tool" --version

cd /tmp
wget https://downloads.example.org/src/app-1.2.tar.gz
tar xzf app-1.2.tar.gz && cd app-1.2
chmod +x configure && ./configure --prefix=/usr/local
make -j2 && make install
