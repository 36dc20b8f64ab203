#!/bin/sh
# Everyday netcat: port checks, a one-shot HTTP responder, a control FIFO.
nc -z -w 2 db.example.com 5432 && echo "db reachable"
nc -l 8080 < /srv/maintenance/response.http &
echo stats | nc -q1 localhost 11211
nc -c 'echo hello' -l 9000 &

mkfifo /run/app/ctl
cat /run/app/ctl | logger -t app &
mknod /dev/loop8 b 7 8
