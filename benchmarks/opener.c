/*
 * opener.c - the application side of the on-access benchmark: open, read
 * and close every file of a list, timing each open() on its own.
 *
 * Usage: opener LISTFILE [GAP_US]
 *
 * LISTFILE holds one path a line. For each path, in order: open() with
 * clock_gettime(CLOCK_MONOTONIC) on both sides (a permission event, if any
 * listener asks for one, is answered inside this call), then read the file
 * to its end and close it. Output on stdout:
 *
 *   total_ns N files N bytes N denied N
 *   OPEN_NS ERRNO        one line per path, in list order (ERRNO 0: opened)
 *
 * total_ns spans the first open() to the last close(): reading the list and
 * starting the process are not timed. With GAP_US, the opener sleeps that
 * many microseconds after each file (counted in total_ns, not in OPEN_NS),
 * so that each open() meets a scanner that has finished with the previous
 * one. Built by the benchmark with gcc into
 * pytest's temporary directory, run inside the benchmark's mount namespace.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define READ_BUF (1 << 20)

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	size_t cap = 4096, n = 0, len = 0;
	char **paths, *line = NULL;
	uint64_t *open_ns, bytes = 0, start, end;
	int *errs, denied = 0;
	struct timespec gap = { 0 };
	char *buf;
	FILE *list;
	ssize_t got;

	if (argc != 2 && argc != 3) {
		fprintf(stderr, "usage: %s LISTFILE [GAP_US]\n", argv[0]);
		return 2;
	}
	if (argc == 3) {
		long us = strtol(argv[2], NULL, 10);

		gap.tv_sec = us / 1000000;
		gap.tv_nsec = us % 1000000 * 1000;
	}
	list = fopen(argv[1], "r");
	if (!list) {
		fprintf(stderr, "%s: %s\n", argv[1], strerror(errno));
		return 2;
	}
	paths = malloc(cap * sizeof(*paths));
	while (paths && (got = getline(&line, &len, list)) > 0) {
		if (line[got - 1] == '\n')
			line[--got] = '\0';
		if (!got)
			continue;
		if (n == cap)
			paths = realloc(paths, (cap *= 2) * sizeof(*paths));
		if (paths)
			paths[n++] = strdup(line);
	}
	fclose(list);
	free(line);
	open_ns = calloc(n ? n : 1, sizeof(*open_ns));
	errs = calloc(n ? n : 1, sizeof(*errs));
	buf = malloc(READ_BUF);
	if (!paths || !open_ns || !errs || !buf) {
		fprintf(stderr, "out of memory\n");
		return 2;
	}

	start = now_ns();
	for (size_t i = 0; i < n; i++) {
		uint64_t t0 = now_ns();
		int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
		uint64_t t1 = now_ns();

		open_ns[i] = t1 - t0;
		if (fd < 0) {
			errs[i] = errno;
			denied += errno == EPERM;
		} else {
			while ((got = read(fd, buf, READ_BUF)) > 0)
				bytes += (uint64_t)got;
			if (got < 0)
				errs[i] = errno;
			close(fd);
		}
		if (gap.tv_sec || gap.tv_nsec)
			nanosleep(&gap, NULL);
	}
	end = now_ns();

	printf("total_ns %llu files %zu bytes %llu denied %d\n",
	       (unsigned long long)(end - start), n, (unsigned long long)bytes,
	       denied);
	for (size_t i = 0; i < n; i++)
		printf("%llu %d\n", (unsigned long long)open_ns[i], errs[i]);
	return 0;
}
