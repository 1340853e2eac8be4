/*-------------------------------------------------------------------------
 *
 * credentials.c
 *	  Secrets from private files, and the refresh token written back.
 *
 * A secret is read from its file when a token is needed, so rotating the
 * file needs no reload.  A file is used only if it is a regular file that
 * neither group nor others may access, the rule PostgreSQL applies to its
 * own ssl_key_file: a secret that other local users can read is already
 * lost.  Trailing white space and line breaks are stripped.
 *
 * Azure AD answers each refresh with a new refresh token.  It is written
 * back atomically (a temporary file in the same directory, fsync, rename,
 * fsync of the directory), keeping the file's mode, while the file is
 * locked against other backends refreshing with the same token.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "compat.h"
#include "pcqual.h"

/* No credential file is larger; anything bigger is a wrong path. */
#define MAX_SECRET_FILE_SIZE (64 * 1024)

/* How often a backend waiting for another's refresh looks again. */
#define LOCK_RETRY_MS 10

struct PcqLockedFile
{
	char	   *path;
	const char *setting;
	int			fd;
	mode_t		mode;
};

void
pcq_wipe_and_free(char **p)
{
	if (*p != NULL)
	{
		explicit_bzero(*p, strlen(*p));
		pfree(*p);
		*p = NULL;
	}
}

/* Refuse a file that is not regular or that group or others may access. */
static void
check_private_file(const struct stat *st, const char *path, const char *setting)
{
	if (!S_ISREG(st->st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("credential file \"%s\" of %s is not a regular file",
						path, setting)));
	if (st->st_mode & (S_IRWXG | S_IRWXO))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("credential file \"%s\" of %s is accessible to group or others",
						path, setting),
				 errdetail("A secret other local users can read is not a secret."),
				 errhint("Make it private to the server's operating system user: chmod 600 \"%s\".",
						 path)));
}

static int
open_private_file(const char *path, const char *setting, struct stat *st)
{
	int			fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);

	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open credential file \"%s\" of %s: %m",
						path, setting)));
	if (fstat(fd, st) != 0)
	{
		int			save_errno = errno;

		CloseTransientFile(fd);
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat credential file \"%s\": %m", path)));
	}
	PG_TRY();
	{
		check_private_file(st, path, setting);
	}
	PG_CATCH();
	{
		CloseTransientFile(fd);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return fd;
}

/*
 * Read an open credential file whole, without its trailing white space.
 * The fd stays open, also on ERROR: whoever opened it closes it.
 */
static char *
read_secret(int fd, const char *path, const char *setting)
{
	char	   *buf = palloc(MAX_SECRET_FILE_SIZE + 1);
	size_t		len = 0;
	ssize_t		n;

	while ((n = read(fd, buf + len, MAX_SECRET_FILE_SIZE + 1 - len)) > 0)
	{
		len += n;
		if (len > MAX_SECRET_FILE_SIZE)
			break;
	}
	if (n < 0 || len > MAX_SECRET_FILE_SIZE)
	{
		int			save_errno = errno;

		explicit_bzero(buf, len);
		pfree(buf);
		errno = save_errno;
		if (n < 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read credential file \"%s\": %m", path)));
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("credential file \"%s\" of %s is larger than %d bytes",
						path, setting, MAX_SECRET_FILE_SIZE)));
	}
	while (len > 0 && isspace((unsigned char) buf[len - 1]))
		len--;
	buf[len] = '\0';
	if (len == 0)
	{
		pfree(buf);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("credential file \"%s\" of %s is empty", path, setting)));
	}
	return buf;
}

/* The contents of a private credential file; wipe them after use. */
char *
pcq_read_private_file(const char *path, const char *setting)
{
	struct stat st;
	int			fd = open_private_file(path, setting, &st);
	char	   *volatile secret = NULL;

	PG_TRY();
	{
		secret = read_secret(fd, path, setting);
	}
	PG_FINALLY();
	{
		CloseTransientFile(fd);
	}
	PG_END_TRY();
	return secret;
}

/*
 * The identity of the file at path now: device, inode, size and
 * modification time, each compared on its own.  A path that is not set, or
 * a file that cannot be looked at, has the stamp of "no file".
 */
void
pcq_file_stamp(const char *path, PcqFileStamp *stamp)
{
	struct stat st;

	memset(stamp, 0, sizeof(*stamp));
	if (!pcq_is_set(path) || stat(path, &st) != 0)
		return;
	stamp->exists = true;
	stamp->dev = (uint64) st.st_dev;
	stamp->ino = (uint64) st.st_ino;
	stamp->size = (int64) st.st_size;
	stamp->mtime_sec = (int64) st.st_mtim.tv_sec;
	stamp->mtime_nsec = (int64) st.st_mtim.tv_nsec;
}

bool
pcq_same_file_stamp(const PcqFileStamp *a, const PcqFileStamp *b)
{
	return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino &&
		a->size == b->size && a->mtime_sec == b->mtime_sec &&
		a->mtime_nsec == b->mtime_nsec;
}

/*
 * Whether the file at path differs from the one *stamp describes; updates
 * *stamp.  A file that cannot be looked at counts as changed: reading it
 * will say why.
 */
bool
pcq_file_changed_since(const char *path, PcqFileStamp *stamp)
{
	PcqFileStamp now;

	pcq_file_stamp(path, &now);
	if (now.exists && pcq_same_file_stamp(&now, stamp))
		return false;
	*stamp = now;
	return true;
}

/* Whether fd is still the file at path (another backend may have renamed). */
static bool
still_at_path(int fd, const char *path)
{
	struct stat by_fd;
	struct stat by_path;

	return fstat(fd, &by_fd) == 0 && stat(path, &by_path) == 0 &&
		by_fd.st_ino == by_path.st_ino && by_fd.st_dev == by_path.st_dev;
}

/*
 * Sleep a little before trying another backend's lock again, on the latch
 * so that cancel works.  The holder is refreshing the token, one request
 * that pcqual.timeout bounds: waiting longer than that means something is
 * stuck, and the caller is better told so than left waiting.
 */
static void
wait_for_file_lock(const char *path, const char *setting, TimestampTz give_up)
{
	long		remaining_ms;

	remaining_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), give_up);
	if (remaining_ms <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("could not lock credential file \"%s\" of %s within %d ms",
						path, setting, pcq_timeout_ms),
				 errdetail("Another session holds the file locked while it refreshes the access token with the refresh token in it."),
				 errhint("pcqual.timeout bounds the wait.  If no session is asking Azure AD for a token, look for the process that holds the file locked.")));
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 Min(remaining_ms, LOCK_RETRY_MS),
					 pcq_wait_event(PCQ_WAIT_CREDENTIAL_LOCK));
	ResetLatch(MyLatch);
}

/*
 * Lock a private credential file against other backends, waiting at most
 * pcqual.timeout while another backend holds it.  The lock is taken on the
 * file now at path: a backend that replaced the file meanwhile leaves us
 * the old inode, which we give up and open again.
 */
PcqLockedFile *
pcq_lock_private_file(const char *path, const char *setting)
{
	PcqLockedFile *file = palloc0(sizeof(PcqLockedFile));
	TimestampTz give_up = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													  pcq_timeout_ms);

	file->path = pstrdup(path);
	file->setting = setting;
	for (;;)
	{
		struct stat st;

		CHECK_FOR_INTERRUPTS();
		file->fd = open_private_file(path, setting, &st);
		file->mode = st.st_mode & 07777;
		if (flock(file->fd, LOCK_EX | LOCK_NB) == 0)
		{
			if (still_at_path(file->fd, path))
				return file;
		}
		else if (errno != EWOULDBLOCK)
		{
			CloseTransientFile(file->fd);
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not lock credential file \"%s\": %m", path)));
		}
		CloseTransientFile(file->fd);
		wait_for_file_lock(path, setting, give_up);
	}
}

char *
pcq_locked_file_contents(PcqLockedFile *file)
{
	if (lseek(file->fd, 0, SEEK_SET) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read credential file \"%s\": %m", file->path)));
	return read_secret(file->fd, file->path, file->setting);
}

/*
 * Write contents to a new private file at tmp, with the mode the replaced
 * file has, and make it durable.  The file is written as 0600 and given
 * its final mode (0400 for a read-only token file) only once it is synced:
 * a 0400 file could not be opened again for writing, which is what
 * durable_rename() does to sync it.  A failure is a WARNING: the caller
 * has its token either way.
 */
static bool
write_private_file(const char *tmp, const char *contents, mode_t mode)
{
	size_t		len = strlen(contents);
	int			fd;
	int			save_errno;

	fd = OpenTransientFilePerm(tmp, O_WRONLY | O_CREAT | O_EXCL | PG_BINARY,
							   S_IRUSR | S_IWUSR);
	if (fd < 0)
	{
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not create \"%s\": %m", tmp)));
		return false;
	}
	errno = 0;
	if (write(fd, contents, len) == (ssize_t) len && write(fd, "\n", 1) == 1 &&
		pg_fsync(fd) == 0 && fchmod(fd, mode & (S_IRUSR | S_IWUSR)) == 0)
	{
		CloseTransientFile(fd);
		return true;
	}
	save_errno = errno ? errno : ENOSPC;
	CloseTransientFile(fd);
	unlink(tmp);
	errno = save_errno;
	ereport(WARNING,
			(errcode_for_file_access(),
			 errmsg("could not write \"%s\": %m", tmp)));
	return false;
}

/*
 * Replace the locked file's contents atomically: a reader sees the old
 * token or the new one, never a mix, and a crash loses neither (the new
 * file is synced before the rename, the directory after it).  Returns
 * false, after a WARNING, when the file could not be replaced.
 */
bool
pcq_replace_locked_file(PcqLockedFile *file, const char *contents)
{
	char	   *tmp = psprintf("%s.pcqual-%d.tmp", file->path, MyProcPid);
	char	   *dir = pstrdup(file->path);
	bool		done = write_private_file(tmp, contents, file->mode);

	if (done && rename(tmp, file->path) != 0)
	{
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not rename file \"%s\" to \"%s\": %m", tmp, file->path)));
		unlink(tmp);
		done = false;
	}
	/* the file is replaced either way; a failed sync is only its WARNING */
	get_parent_directory(dir);
	if (done)
		(void) fsync_fname_ext(dir[0] != '\0' ? dir : ".", true, false, WARNING);
	pfree(dir);
	pfree(tmp);
	return done;
}

void
pcq_unlock_private_file(PcqLockedFile *file)
{
	if (file->fd >= 0)
		CloseTransientFile(file->fd);	/* closing releases the flock */
	file->fd = -1;
}
