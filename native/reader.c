/*
 * reader.c - the native reader threads, one per fanotify group: read
 * events, answer what needs no scan, queue the rest. Never takes the GIL,
 * never logs.
 *
 * Owns the read buffer and each event from read() until it is answered
 * here (respond.c, to the group it came from) or enqueued (jobs.c, with
 * that group); must not touch a job after the enqueue, nor the verdict
 * cache but through remember.c, nor another group's fd. On
 * any error before the enqueue it answers the event itself (allow), so no
 * opener waits on a failure of ours. Events are handled strictly in the
 * order read: a close-write invalidates the file's cached state before
 * a later open of it is looked up.
 *
 * Answered at once, in this order: our own pid; not a regular file; an
 * empty file when the rules find nothing in one (empty_clean, below); an
 * excluded executable or user; a verdict-cache hit; a path outside the
 * watched prefixes or inside an excluded one, unless the inode was found
 * malicious before (then scanned under any name), or (outside the watch,
 * not excluded) the event is an exec or an open by an interpreter or
 * by a program not known yet (interp_open). A full queue is answered by
 * policy.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/fanotify.h>
#include <time.h>
#include <unistd.h>

#include "fan.h"

#define READ_BUF 16384
#define ALIVE_MS 500	/* below the least stall_timeout (1 s) */

/* Answer @fd to @g at once and close it; @counter says why. */
static void answer_now(struct group *g, int fd, int response,
		       uint64_t *counter, uint64_t t0)
{
	struct vg_fan *fan = g->fan;

	respond(fan, g->index, fd, response);
	respond_latency(fan, t0);
	fan_count(counter);
	close(fd);
}

/* The path of the file behind @fd ("" if unknown). */
static void path_of(int fd, char *buf, size_t len)
{
	char link[64];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, buf, len - 1);
	buf[n < 0 ? 0 : n] = '\0';
}

/*
 * 1 when @path, looked up in our mount namespace, is the file of @st.
 * An open through another namespace (a container's bind mount of a
 * watched tree) yields a path that means nothing here: such an event is
 * scanned rather than judged "outside the watch" on a wrong path.
 */
static int same_file(const char *path, const struct stat *st)
{
	struct stat here;

	/* lstat: a link at an unwatched path must not vouch for the file */
	return !lstat(path, &here) && here.st_dev == st->st_dev &&
	       here.st_ino == st->st_ino;
}

/*
 * 1 when the file of @fd (stat @st) is empty and an empty file is clean
 * under @set's rules whatever its name (the daemon scanned zero bytes
 * with them: settings empty_clean): a file just created, or truncated by
 * O_TRUNC, needs no scan. Only on the local filesystems listed for
 * ignore marks, whose st_size is the truth: a pseudo file (procfs,
 * sysfs) says 0 and has bytes.
 */
static int empty_clean(const struct settings *set, int fd,
		       const struct stat *st)
{
	return set->empty_clean && st->st_size == 0 && settings_local_fs(set, fd);
}

/* Fill the parts of a job that come from the event and the file. */
static void job_from(struct vg_job *job, const struct fanotify_event_metadata *m,
		     const struct stat *st, uint32_t kind, uint64_t t0)
{
	memset(job, 0, offsetof(struct vg_job, path));
	job->fd = m->fd;
	job->pid = m->pid;
	job->kind = kind;
	job->uid = st->st_uid;
	job->dev = st->st_dev;
	job->ino = st->st_ino;
	job->size = (uint64_t)st->st_size;
	job->ctime_sec = st->st_ctim.tv_sec;
	job->ctime_nsec = st->st_ctim.tv_nsec;
	job->queued_ns = t0;
}

/*
 * For an open outside the watch: 1 when its opener runs an interpreter
 * or the loader (the job becomes an exec: exec policies) or a program
 * not known yet (the job is queued to learn it: VG_JOB_CLASSIFY). Inside
 * the watch nothing is asked: the file is scanned anyway, and a server
 * in python, php or java keeps the open answers for the files it reads.
 * The stat of /proc/PID/exe (interp_of) is the whole cost for a program
 * already known.
 */
static int interp_open(struct vg_fan *fan, const struct settings *set,
		       struct vg_job *job)
{
	if (job->kind != VG_EV_OPEN || !interp_on(set->interp))
		return 0;
	switch (interp_of(fan, set->interp, job->pid)) {
	case INTERP_YES:
		job->kind = VG_EV_EXEC;
		fan_count(&fan->stats.interp_opens);
		return 1;
	case INTERP_UNKNOWN:
		job->flags = VG_JOB_CLASSIFY | VG_JOB_OUTSIDE;
		fan_count(&fan->stats.exe_unknown);
		return 1;
	default:
		return 0;
	}
}

/*
 * For an open outside the watch, whatever program makes it: 1 when the
 * file may be a library the loader is loading into that program (found by
 * review: LD_PRELOAD or dlopen; ld.so opens it inside an ordinary program,
 * with no exec event): an ELF file that a user can write (the job becomes
 * an exec).
 * Files only root can write are the system's own. A pread of 4 bytes
 * through the event's fd opens nothing; on a filesystem not listed as
 * local it is not risked: the file is scanned.
 */
static int user_library(struct vg_fan *fan, const struct settings *set,
			const struct stat *st, struct vg_job *job)
{
	char magic[4];

	if (job->kind != VG_EV_OPEN || fan_root_only(st))
		return 0;
	if (settings_local_fs(set, job->fd) &&
	    (pread(job->fd, magic, sizeof(magic), 0) != sizeof(magic) ||
	     memcmp(magic, "\x7f" "ELF", sizeof(magic))))
		return 0;
	job->kind = VG_EV_EXEC;
	fan_count(&fan->stats.interp_opens);	/* the loader's open: an exec */
	return 1;
}

/*
 * 1 when the event must be scanned (and @job is made ready for that):
 * a watched path (or one whose name means nothing here, or an inode
 * found malicious); else, when not excluded and exec_anywhere holds, an
 * exec or an open that interp_open claims.
 */
static int to_scan(struct vg_fan *fan, const struct settings *set,
		   const struct stat *st, struct vg_job *job)
{
	int anywhere;

	if (!job->path[0] || filters_path_scanned(set->filters, job->path, 0) ||
	    !same_file(job->path, st) || remember_detected(fan, st))
		return 1;
	anywhere = set->exec_anywhere &&
		   filters_path_scanned(set->filters, job->path, 1);
	return anywhere && (job->kind == VG_EV_EXEC ||
			    user_library(fan, set, st, job) ||
			    interp_open(fan, set, job));
}

/* Decide a permission event the reader can decide; 0 if a scan is needed. */
static int decide_now(struct group *g, const struct settings *set,
		      const struct fanotify_event_metadata *m,
		      const struct stat *st, struct vg_job *job, uint64_t t0)
{
	struct vg_fan *fan = g->fan;
	int response;

	if (filters_process_excluded(set->filters, m->pid)) {
		answer_now(g, m->fd, VG_ALLOW, &fan->stats.excluded, t0);
		return 1;
	}
	if (remember_lookup(fan, set, m->fd, st, &response)) {
		answer_now(g, m->fd, response,
			   response == VG_ALLOW ? &fan->stats.cache_allow
						: &fan->stats.cache_deny, t0);
		return 1;
	}
	path_of(m->fd, job->path, sizeof(job->path));
	if (to_scan(fan, set, st, job))
		return 0;
	answer_now(g, m->fd, VG_ALLOW, &fan->stats.filtered, t0);
	return 1;
}

/*
 * A permission event: answer it here or hand it to the workers. Our own
 * pid's events are answered first and unconditionally: among them is the
 * backing file's event that another reader's read() raised (fan.h).
 */
static void perm_event(struct group *g, const struct settings *set,
		       const struct fanotify_event_metadata *m, uint64_t t0)
{
	uint32_t kind = m->mask & FAN_OPEN_EXEC_PERM ? VG_EV_EXEC : VG_EV_OPEN;
	struct vg_fan *fan = g->fan;
	struct vg_job job;
	struct stat st;

	fan_count(&fan->stats.perm_events);
	if (m->pid == fan->self) {
		answer_now(g, m->fd, VG_ALLOW, &fan->stats.self_allowed, t0);
		return;
	}
	if (fstat(m->fd, &st) || !S_ISREG(st.st_mode)) {
		answer_now(g, m->fd, VG_ALLOW, &fan->stats.filtered, t0);
		return;
	}
	if (empty_clean(set, m->fd, &st)) {
		answer_now(g, m->fd, VG_ALLOW, &fan->stats.empty, t0);
		return;
	}
	job_from(&job, m, &st, kind, t0);
	if (decide_now(g, set, m, &st, &job, t0))
		return;
	if (jobs_enqueue(fan, &job, g->index, remember_epoch(fan, &st)))
		answer_now(g, m->fd, set->on_queue_full[policy_of(job.kind)],
			   &fan->stats.queue_full, t0);
}

/*
 * A close-write notification: invalidate, then queue a scan if asked.
 * Skipped only when the file itself has no name left (st_nlink == 0):
 * nobody can open it again; or when it is empty and empty_clean holds
 * (nothing to find, nothing to quarantine). Never by the path's text: a file may be
 * named "x (deleted)", and a name unlinked while another remains (a
 * temporary name linked into place) still leaves bytes others will open.
 */
static void notify_event(struct group *g, const struct settings *set,
			 const struct fanotify_event_metadata *m, uint64_t t0)
{
	struct vg_fan *fan = g->fan;
	struct vg_job job;
	struct stat st;
	int scanned;

	fan_count(&fan->stats.notify_events);
	if (m->pid == fan->self || fstat(m->fd, &st) || !S_ISREG(st.st_mode)) {
		close(m->fd);
		return;
	}
	remember_invalidate(fan, g->index, m->fd, &st);
	job_from(&job, m, &st, VG_EV_CLOSE_WRITE, t0);
	scanned = (fan->cfg.events & VG_EV_CLOSE_WRITE) &&
		  !empty_clean(set, m->fd, &st) &&
		  !filters_process_excluded(set->filters, m->pid);
	if (scanned) {
		path_of(m->fd, job.path, sizeof(job.path));
		scanned = st.st_nlink > 0 &&
			  (!job.path[0] ||
			   filters_path_scanned(set->filters, job.path, 0) ||
			   !same_file(job.path, &st));
	}
	if (!scanned) {
		close(m->fd);
		return;
	}
	if (jobs_enqueue(fan, &job, g->index, remember_epoch(fan, &st))) {
		fan_count(&fan->stats.notify_dropped);
		close(m->fd);
	}
}

/* Dispatch one event record under the settings in force when it is read. */
static void handle(struct group *g, const struct fanotify_event_metadata *m)
{
	struct vg_fan *fan = g->fan;
	uint64_t t0 = fan_now_ns();
	struct settings *set;

	fan_count(&fan->stats.events);
	if (m->mask & FAN_Q_OVERFLOW) {
		remember_forget_all(fan);
		fan_count(&fan->stats.overflows);
		return;
	}
	if (m->fd < 0)
		return;
	set = settings_get(fan);
	if (m->mask & (FAN_OPEN_PERM | FAN_OPEN_EXEC_PERM))
		perm_event(g, set, m, t0);
	else
		notify_event(g, set, m, t0);
	settings_put(set);
}

/* Handle every whole record in @buf[0..@len). */
static void handle_batch(struct group *g, const char *buf, ssize_t len)
{
	const struct fanotify_event_metadata *m = (const void *)buf;

	while (FAN_EVENT_OK(m, len)) {
		if (m->vers == FANOTIFY_METADATA_VERSION)
			handle(g, m);
		else
			fan_count(&g->fan->stats.errors);
		m = FAN_EVENT_NEXT(m, len);
	}
}

/* Record that @g's reader came back (from poll or read): not stuck. */
static void alive(struct group *g)
{
	__atomic_store_n(&g->alive_ns, fan_now_ns(), __ATOMIC_RELAXED);
}

/*
 * A reader thread: poll its group and the wake fd until stopped, then
 * close the group (fan.h: the kernel allows what it holds, which may free
 * the reader of an upper layer). It must not die while the group is
 * open (every opener on the marked filesystem would wait forever), so a
 * failed read is counted and retried after a millisecond. EMFILE: the
 * kernel could not open an event fd for us, and it denies that event
 * (its opener gets an error); the daemon keeps queue_size well below
 * RLIMIT_NOFILE so it does not happen. EAGAIN after poll said readable:
 * the same for a file under a write lease (fan.c group_open), counted in
 * stats.unopened (only when it is the first event of a read: the kernel
 * returns what it copied before a failed event). poll wakes at least every
 * ALIVE_MS, so a reader idle in poll always looks alive (vg_fan_stats).
 * Each time it comes back it stores what the settle thread checked.
 */
void *reader_main(void *arg)
{
	static const struct timespec pause = { .tv_nsec = 1000000 };
	struct group *g = arg;
	struct vg_fan *fan = g->fan;
	char buf[READ_BUF] __attribute__((aligned(8)));
	struct pollfd pfd[2] = { { .fd = g->fd, .events = POLLIN },
				 { .fd = fan->wake_fd, .events = POLLIN } };

	pthread_setname_np(pthread_self(), "vigild-reader");
	for (;;) {
		ssize_t n;

		if (poll(pfd, 2, ALIVE_MS) < 0 && errno != EINTR)
			nanosleep(&pause, NULL);
		alive(g);
		if (pfd[1].revents)
			break;
		settle_store(fan);	/* before the opens about to be read */
		if (!(pfd[0].revents & (POLLIN | POLLHUP)))
			continue;
		n = read(pfd[0].fd, buf, sizeof(buf));
		alive(g);
		if (n > 0) {
			fan_count(&fan->stats.reads);
			handle_batch(g, buf, n);
		} else if (n == 0 || errno == EBADF) {
			break;	/* a test's socket closed; never a live group */
		} else if (errno == EAGAIN) {
			/* readable, yet nothing read: the kernel could not
			 * open the first event's file for us (fan.c
			 * group_open) and dropped or denied that event */
			fan_count(&fan->stats.unopened);
		} else if (errno != EINTR) {
			fan_count(&fan->stats.errors);
			nanosleep(&pause, NULL);
		}
	}
	respond_close(fan, g->index);
	return NULL;
}
