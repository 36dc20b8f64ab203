#!/bin/sh
# socat as a plumber: port forwarding, a UNIX socket client, a serial console.
socat TCP-LISTEN:8080,fork,reuseaddr TCP:127.0.0.1:80 &
echo '{"cmd":"status"}' | socat - UNIX-CONNECT:/run/app.sock
socat EXEC:'/usr/bin/ssh backup.example.org',pty TCP-LISTEN:2222,bind=127.0.0.1 &
socat -d -d /dev/ttyUSB0,raw,echo=0,b115200 STDIO
