/* Paths inside a container root, resolved without leaving it.
 *
 * The agent creates and mounts things at paths inside roots whose content the
 * image controls (/proc, /dev, /etc/hostname, --tmpfs targets...). A symlink in
 * the image such as /etc -> /../../run, or a tmpfs target under a link to an
 * absolute path, must not make it create or mount anything outside the root.
 *
 * Choice: openat2(2) with RESOLVE_IN_ROOT, called through syscall() (musl has
 * no wrapper). The root's fd acts as "/" for the whole walk, so absolute
 * symlinks and ".." are resolved inside it, exactly as they would be for a
 * process chrooted there (and as runc's securejoin does in user space): images
 * whose links stay inside keep working, which an O_NOFOLLOW walk that refuses
 * every symlink would break. RESOLVE_NO_MAGICLINKS refuses /proc/PID/root-style
 * links too, since a procfs is mounted inside the root before the other
 * targets. The guest kernel is ours (6.1; openat2 is 5.6+), so there is no
 * fallback: ENOSYS fails the operation rather than resolving unsafely.
 *
 * The target is then mounted through /proc/self/fd/N of the O_PATH fd (the
 * usual trick): the mount lands on the inode that was resolved, not on a path
 * that could be re-resolved differently in between. */
#define _GNU_SOURCE
#include "agent.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif
/* From <linux/openat2.h>, which musl does not ship. */
struct hb_open_how { uint64_t flags, mode, resolve; };
#define HB_RESOLVE_NO_MAGICLINKS 0x02
#define HB_RESOLVE_IN_ROOT 0x10

int open_in_root(int rootfd, const char *rel, int flags) {
  struct hb_open_how how = {(uint64_t)(unsigned)(flags | O_CLOEXEC), 0,
                            HB_RESOLVE_IN_ROOT | HB_RESOLVE_NO_MAGICLINKS};
  while (*rel == '/') rel++;
  if (!*rel) rel = ".";
  /* EAGAIN: a rename raced with ".." resolution; the kernel asks for a retry */
  for (int tries = 0; tries < 16; tries++) {
    long fd = syscall(SYS_openat2, rootfd, rel, &how, sizeof how);
    if (fd >= 0) return (int)fd;
    if (errno != EAGAIN && errno != EINTR) return -1;
  }
  return -1;
}

/* mkdir -p REL inside the root. Each parent is resolved with open_in_root and
 * the next component created in it with mkdirat, which never follows a link
 * (an existing one gives EEXIST and the next walk resolves it, in the root). */
int mkdir_in_root(int rootfd, const char *rel, mode_t mode) {
  char buf[4096];
  while (*rel == '/') rel++;
  size_t len = strlen(rel);
  if (len >= sizeof buf) { errno = ENAMETOOLONG; return -1; }
  memcpy(buf, rel, len + 1);
  for (size_t i = 1; i <= len; i++) {
    if ((buf[i] != '/' && buf[i] != 0) || buf[i - 1] == '/') continue; /* not the end of a component */
    char saved = buf[i];
    buf[i] = 0;
    char *slash = strrchr(buf, '/');
    const char *name = slash ? slash + 1 : buf;
    if (slash) *slash = 0;
    int dir = open_in_root(rootfd, slash ? buf : ".", O_PATH | O_DIRECTORY);
    if (slash) *slash = '/';
    if (dir < 0) return -1;
    int r = mkdirat(dir, name, mode), e = errno; /* NAME ends at buf[i], still 0 */
    close(dir);
    buf[i] = saved;
    if (r < 0 && e != EEXIST) { errno = e; return -1; }
  }
  return 0;
}

int mount_in_root(int rootfd, const char *rel, const char *src, const char *type, unsigned long flags,
                  const char *opts) {
  char proc[32];
  /* A failure here shows as the open's or the mount's error below. */
  (void)mkdir_in_root(rootfd, rel, 0755);
  int fd = open_in_root(rootfd, rel, O_PATH | O_DIRECTORY);
  if (fd < 0) return -1;
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  int r = mount(src, proc, type, flags, opts), e = errno;
  close(fd);
  errno = e;
  return r;
}
