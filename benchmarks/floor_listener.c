/*
 * floor_listener.c - the floor of on-access blocking: a fanotify listener
 * that allows every permission event at once, and does nothing else.
 *
 * Usage: floor_listener MOUNTPOINT
 *
 * Marks the whole filesystem holding MOUNTPOINT (a tmpfs the benchmark
 * mounted in a private mount namespace: never anything else) for
 * FAN_OPEN_PERM and FAN_OPEN_EXEC_PERM, prints "ready" once the mark is in
 * place, then reads events in batches and answers FAN_ALLOW to each one.
 * What an opener pays with this listener running is the cost of one
 * permission round trip through the kernel and back, no scan at all.
 *
 * On SIGTERM or SIGINT it prints "answered N" and exits; closing the group
 * makes the kernel allow any event still pending, so no opener waits on it.
 * Built by the benchmark with gcc into pytest's temporary directory.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

int main(int argc, char **argv)
{
	char buf[65536] __attribute__((aligned(8)));
	struct sigaction sa = { .sa_handler = on_signal };	/* no SA_RESTART */
	unsigned long long answered = 0;
	int fan;

	if (argc != 2) {
		fprintf(stderr, "usage: %s MOUNTPOINT\n", argv[0]);
		return 2;
	}
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	fan = fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC, O_RDONLY | O_LARGEFILE);
	if (fan < 0) {
		fprintf(stderr, "fanotify_init: %s\n", strerror(errno));
		return 1;
	}
	if (fanotify_mark(fan, FAN_MARK_ADD | FAN_MARK_FILESYSTEM,
			  FAN_OPEN_PERM | FAN_OPEN_EXEC_PERM, AT_FDCWD, argv[1])) {
		fprintf(stderr, "fanotify_mark %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	while (!stop) {
		ssize_t n = read(fan, buf, sizeof(buf));
		struct fanotify_event_metadata *m = (void *)buf;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "read: %s\n", strerror(errno));
			return 1;
		}
		for (; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
			struct fanotify_response r = { .fd = m->fd, .response = FAN_ALLOW };

			if (m->fd < 0)
				continue;
			if (m->mask & (FAN_OPEN_PERM | FAN_OPEN_EXEC_PERM)) {
				if (write(fan, &r, sizeof(r)) != sizeof(r))
					fprintf(stderr, "write: %s\n", strerror(errno));
				answered++;
			}
			close(m->fd);
		}
	}
	close(fan);
	printf("answered %llu\n", answered);
	return 0;
}
