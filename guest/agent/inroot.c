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

/* The new mount API (5.2+; mount_setattr 5.12+), from <linux/mount.h>, which
 * musl does not wrap. */
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#define HB_OPEN_TREE_CLONE 1
#define HB_AT_EMPTY_PATH 0x1000
#define HB_MOVE_MOUNT_F_EMPTY_PATH 0x4
#define HB_MOVE_MOUNT_T_EMPTY_PATH 0x40
#define HB_MOUNT_ATTR_RDONLY 0x1
#define HB_MOUNT_ATTR_NOSUID 0x2
#define HB_MOUNT_ATTR_NODEV 0x4
struct hb_mount_attr { uint64_t attr_set, attr_clr, propagation, userns_fd; };

/* Binds SRCFD (an O_PATH fd of a directory or a file outside the root) at REL
 * inside the root, nosuid,nodev, read-only if RO. The mount point is created if
 * missing (a directory, or an empty file for a file), resolved in the root.
 * The bind is built detached (open_tree), its flags set (mount_setattr), then
 * attached to the resolved target's fd (move_mount): no path is re-resolved
 * between the checks and the mount, and no remount can hit another mount.
 * 0, or -1 with errno. */
int bind_in_root(int rootfd, const char *rel, int srcfd, int ro) {
  struct stat src, dst;
  if (fstat(srcfd, &src) < 0) return -1;
  if (S_ISLNK(src.st_mode)) { errno = ELOOP; return -1; }
  while (*rel == '/') rel++;
  if (S_ISDIR(src.st_mode)) (void)mkdir_in_root(rootfd, rel, 0755); /* a failure shows in the open */
  else {
    char parent[4096];
    if (snprintf(parent, sizeof parent, "%s", rel) >= (int)sizeof parent) { errno = ENAMETOOLONG; return -1; }
    size_t l = strlen(parent);
    while (l > 0 && parent[l - 1] == '/') parent[--l] = 0; /* "a/f/": the file f */
    char *slash = strrchr(parent, '/');
    const char *base = slash ? slash + 1 : parent;
    if (slash) { *slash = 0; (void)mkdir_in_root(rootfd, parent, 0755); }
    int dir = open_in_root(rootfd, slash ? parent : ".", O_PATH | O_DIRECTORY);
    if (dir < 0) return -1;
    /* BASE is one component: O_NOFOLLOW|O_EXCL creates it in DIR or fails */
    int fd = openat(dir, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd >= 0) close(fd);
    close(dir);
  }
  int target = open_in_root(rootfd, rel, O_PATH);
  if (target < 0) return -1;
  if (fstat(target, &dst) < 0) { int e = errno; close(target); errno = e; return -1; }
  if (S_ISDIR(src.st_mode) != S_ISDIR(dst.st_mode)) { close(target); errno = S_ISDIR(src.st_mode) ? ENOTDIR : EISDIR; return -1; }
  long tree = syscall(SYS_open_tree, srcfd, "", HB_OPEN_TREE_CLONE | O_CLOEXEC | HB_AT_EMPTY_PATH);
  if (tree < 0) { int e = errno; close(target); errno = e; return -1; }
  struct hb_mount_attr attr = {HB_MOUNT_ATTR_NOSUID | HB_MOUNT_ATTR_NODEV | (ro ? HB_MOUNT_ATTR_RDONLY : 0), 0, 0, 0};
  long r = syscall(SYS_mount_setattr, (int)tree, "", HB_AT_EMPTY_PATH, &attr, sizeof attr);
  if (r == 0)
    r = syscall(SYS_move_mount, (int)tree, "", target, "", HB_MOVE_MOUNT_F_EMPTY_PATH | HB_MOVE_MOUNT_T_EMPTY_PATH);
  int e = errno;
  close((int)tree); /* unattached, the clone goes away with its fd */
  close(target);
  errno = e;
  return r < 0 ? -1 : 0;
}
