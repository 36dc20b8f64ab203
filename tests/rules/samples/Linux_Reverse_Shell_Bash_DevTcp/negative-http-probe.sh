#!/bin/bash
# Health probe without curl: bash's /dev/tcp for a plain HTTP request.
set -euo pipefail
host=${1:-example.com}
exec 3<>/dev/tcp/"$host"/80
printf 'GET /health HTTP/1.0\r\nHost: %s\r\n\r\n' "$host" >&3
status=$(head -n1 <&3)
exec 3<&-

# Port check.
if timeout 1 bash -c '</dev/tcp/127.0.0.1/22'; then echo "ssh is up"; fi
echo "$status"
