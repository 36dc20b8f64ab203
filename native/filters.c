/*
 * filters.c - which opens are scanned: watched and excluded path prefixes,
 * excluded executables and users.
 *
 * Owns immutable filter sets: a new set is built whole as part of a
 * settings snapshot (settings.c) and swapped in with it, so the reader
 * never sees half an update. Must not touch the handle: every function
 * here works on a filter set and the event's pid or path alone.
 *
 * Decisions here are by path or by process, never cached on the inode: a
 * rename can move a file into a watched tree, and fanotify (permission
 * class) reports no renames.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fan.h"

/* Copy @n strings; NULL on allocation failure. */
static char **copy_strings(const char *const *src, uint32_t n)
{
	char **out = calloc(n + 1, sizeof(*out));

	if (!out)
		return NULL;
	for (uint32_t i = 0; i < n; i++) {
		out[i] = strdup(src[i]);
		if (!out[i]) {
			while (i--)
				free(out[i]);
			free(out);
			return NULL;
		}
	}
	return out;
}

/* Free @n strings copied by copy_strings; NULL is fine. */
static void free_strings(char **s, uint32_t n)
{
	if (!s)
		return;
	for (uint32_t i = 0; i < n; i++)
		free(s[i]);
	free(s);
}

/* Free a filter set; NULL is fine. */
void filters_free(struct filters *f)
{
	if (!f)
		return;
	free_strings(f->watch, f->n_watch);
	free_strings(f->exclude, f->n_exclude);
	free_strings(f->exes, f->n_exes);
	free(f->uids);
	free(f);
}

/* A new filter set holding copies of everything; NULL without memory. */
struct filters *filters_new(const char *const *watch, uint32_t n_watch,
			    const char *const *exclude, uint32_t n_exclude,
			    const char *const *exes, uint32_t n_exes,
			    const uint32_t *uids, uint32_t n_uids)
{
	struct filters *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->n_watch = n_watch;
	f->n_exclude = n_exclude;
	f->n_exes = n_exes;
	f->n_uids = n_uids;
	f->watch = copy_strings(watch, n_watch);
	f->exclude = copy_strings(exclude, n_exclude);
	f->exes = copy_strings(exes, n_exes);
	f->uids = calloc(n_uids + 1, sizeof(*f->uids));
	if (!f->watch || !f->exclude || !f->exes || !f->uids) {
		filters_free(f);
		return NULL;
	}
	if (n_uids)		/* @uids may be NULL then: memcpy's UB */
		memcpy(f->uids, uids, n_uids * sizeof(*uids));
	return f;
}

/* 1 when @path is @prefix or lies below it ("/" holds every path). */
static int under(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);

	if (n == 1 && prefix[0] == '/')
		return 1;
	return !strncmp(path, prefix, n) && (path[n] == '/' || path[n] == '\0');
}

/* 1 when @path lies under one of @n @prefixes. */
static int under_any(const char *path, char *const *prefixes, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (under(path, prefixes[i]))
			return 1;
	return 0;
}

/*
 * 1 when an event on @path is to be scanned: not excluded and under a
 * watched prefix, or @anywhere: execs are checked anywhere on the marked
 * filesystems by default (exec_anywhere): malware runs from /var/tmp too.
 */
int filters_path_scanned(const struct filters *f, const char *path,
			 int anywhere)
{
	if (under_any(path, f->exclude, f->n_exclude))
		return 0;
	return anywhere || !f->n_watch || under_any(path, f->watch, f->n_watch);
}

/* The executable of @pid into @buf; 0 or -1 (process gone, kernel thread). */
static int exe_of(pid_t pid, char *buf, size_t len)
{
	char link[64];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/%d/exe", (int)pid);
	n = readlink(link, buf, len - 1);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	return 0;
}

/*
 * 1 when @exe, an excluded executable's path, names in our mount
 * namespace the very file @pid runs. The text of /proc/PID/exe alone is
 * no proof: a process in another mount namespace (an unprivileged user
 * namespace will do) can run its own program bind-mounted at that path,
 * and the link then reads the same.
 */
static int runs_file(pid_t pid, const char *exe)
{
	struct stat mine, theirs;
	char link[64];

	snprintf(link, sizeof(link), "/proc/%d/exe", (int)pid);
	return !stat(link, &theirs) && !stat(exe, &mine) &&
	       mine.st_dev == theirs.st_dev && mine.st_ino == theirs.st_ino;
}

/* 1 when @pid runs an excluded executable or as an excluded user. */
int filters_process_excluded(const struct filters *f, pid_t pid)
{
	char path[VG_PATH_MAX], proc[64];
	struct stat st;

	if (f->n_uids) {
		/* /proc/PID is owned by the process's effective uid */
		snprintf(proc, sizeof(proc), "/proc/%d", (int)pid);
		if (!stat(proc, &st))
			for (uint32_t i = 0; i < f->n_uids; i++)
				if (f->uids[i] == st.st_uid)
					return 1;
	}
	if (f->n_exes && !exe_of(pid, path, sizeof(path)))
		for (uint32_t i = 0; i < f->n_exes; i++)
			if (!strcmp(path, f->exes[i]))
				return runs_file(pid, f->exes[i]);
	return 0;
}
