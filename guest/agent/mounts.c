/* Mounts: the agent's own at boot, and MOUNT_ROOT, which mounts a container
 * root shared by the host with the kernel filesystems and files a container
 * expects. Everything inside a root goes through inroot.c. */
#define _GNU_SOURCE
#include "agent.h"
#include "request.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* mkdir -p for the agent's own paths (/run, /c), never inside a root. */
int mkdir_p(const char *path, mode_t mode) {
  char buf[4096];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return -1;
  for (char *s = buf + 1; *s; s++) {
    if (*s != '/') continue;
    *s = 0;
    if (mkdir(buf, mode) < 0 && errno != EEXIST) return -1;
    *s = '/';
  }
  return (mkdir(buf, mode) < 0 && errno != EEXIST) ? -1 : 0;
}

static void must(int r, const char *what) {
  if (r < 0 && errno != EEXIST) agent_log("%s: %s", what, strerror(errno));
}

void early_mounts(void) {
  /* PID 1 cannot give up: a failure is logged and shows up later, when the
   * host's first request needs what is missing. */
  must(mount("proc", "/proc", "proc", 0, NULL), "mount /proc");
  must(mount("sysfs", "/sys", "sysfs", 0, NULL), "mount /sys");
  must(mount("devtmpfs", "/dev", "devtmpfs", 0, NULL), "mount /dev");
  must(mkdir(ROOTS, 0755), "mkdir " ROOTS);
  must(mkdir("/run", 0755), "mkdir /run");
  must(mount("tmpfs", "/run", "tmpfs", 0, "mode=755"), "mount /run");
  must(mount("tmpfs", ROOTS, "tmpfs", 0, "mode=755"), "mount " ROOTS);
  must(mkdir("/sys/fs/cgroup", 0755), "mkdir /sys/fs/cgroup");
  must(mount("cgroup2", "/sys/fs/cgroup", "cgroup2", 0, NULL), "mount cgroup2");
}

/* Mounts at ROOT/SUB, creating SUB (inside the root). Failures are logged; the
 * caller decides whether they matter. */
static int mount_at(const char *root, int rootfd, const char *sub, const char *src, const char *type,
                    unsigned long flags, const char *opts) {
  if (mount_in_root(rootfd, sub, src, type, flags, opts) < 0) {
    int e = errno;
    agent_log("mount %s on %s%s: %s", type, root, sub, strerror(e));
    errno = e;
    return -1;
  }
  return 0;
}

static void make_dev_nodes(int rootfd) {
  static const struct { const char *name; unsigned maj, min; } nodes[] = {
      {"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9},
      {"tty", 5, 0},
  };
  static const struct { const char *name, *target; } links[] = {
      {"ptmx", "pts/ptmx"}, {"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"},
      {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"},
  };
  int dev = open_in_root(rootfd, "dev", O_PATH | O_DIRECTORY);
  if (dev < 0) { agent_log("dev nodes: %s", strerror(errno)); return; }
  for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
    /* EEXIST only if the root was mounted before; chmod: the umask applied */
    must(mknodat(dev, nodes[i].name, S_IFCHR | 0666, makedev(nodes[i].maj, nodes[i].min)), nodes[i].name);
    must(fchmodat(dev, nodes[i].name, 0666, AT_SYMLINK_NOFOLLOW), nodes[i].name);
  }
  for (size_t i = 0; i < sizeof links / sizeof links[0]; i++)
    must(symlinkat(links[i].target, dev, links[i].name), links[i].name);
  close(dev);
}

/* Writes a file in the agent's own tmpfs and bind-mounts it over ROOT/etc/FILE,
 * as Docker does for hostname/hosts/resolv.conf: the image is left untouched.
 * An image whose /etc is not a directory, or whose FILE is neither absent nor a
 * regular file (a symlink, say), keeps its own. */
static void bind_etc_file(const char *root, int rootfd, const char *cname, const char *file, const char *content) {
  char src[256], proc[32];
  struct stat st;
  snprintf(src, sizeof src, "/run/etc-%s", cname);
  mkdir_p(src, 0755); /* a failure shows in the open below */
  snprintf(src, sizeof src, "/run/etc-%s/%s", cname, file);
  int fd = open(src, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) { agent_log("%s: %s", src, strerror(errno)); return; }
  size_t len = strlen(content);
  if (write(fd, content, len) != (ssize_t)len) agent_log("write %s: %s", src, strerror(errno));
  close(fd);
  int etc = open_in_root(rootfd, "etc", O_PATH | O_NOFOLLOW);
  if (etc < 0) return; /* no /etc */
  if (fstat(etc, &st) < 0 || !S_ISDIR(st.st_mode)) { close(etc); return; } /* a symlink: leave it */
  /* FILE is one fixed component: a plain openat with O_NOFOLLOW stays in etc */
  int dst = openat(etc, file, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (dst < 0) {
    fd = openat(etc, file, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd >= 0) close(fd);
    dst = openat(etc, file, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  }
  close(etc);
  if (dst < 0) { agent_log("%s/etc/%s: %s", root, file, strerror(errno)); return; }
  if (fstat(dst, &st) == 0 && S_ISREG(st.st_mode)) {
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", dst);
    if (mount(src, proc, NULL, MS_BIND, NULL) < 0) agent_log("bind %s/etc/%s: %s", root, file, strerror(errno));
  }
  close(dst);
}

/* /etc/hosts of root CNAME: localhost, its hostname, then EXTRA_HOSTS. */
static void hosts_content(char *buf, size_t cap, const char *extra_hosts) {
  char host[65] = "";
  if (gethostname(host, sizeof host - 1) < 0) agent_log("gethostname: %s", strerror(errno));
  snprintf(buf, cap, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t%s\n%s", host, extra_hosts);
}

static void provide_etc_files(const char *root, int rootfd, const char *cname, const char *extra_hosts) {
  char host[65] = "", buf[512 + sizeof ((struct mount_req *)0)->hosts];
  const char *dns = configured_dns();
  if (gethostname(host, sizeof host - 1) < 0) agent_log("gethostname: %s", strerror(errno));
  snprintf(buf, sizeof buf, "%s\n", host);
  bind_etc_file(root, rootfd, cname, "hostname", buf);
  hosts_content(buf, sizeof buf, extra_hosts);
  bind_etc_file(root, rootfd, cname, "hosts", buf);
  if (*dns) {
    snprintf(buf, sizeof buf, "nameserver %s\n", dns);
    bind_etc_file(root, rootfd, cname, "resolv.conf", buf);
  }
}

/* Rewrites root CNAME's /etc/hosts and /etc/resolv.conf in place (the files
 * provide_etc_files bound: the container sees the new content at once) after
 * its address moved. A file that was never made is left alone. 0 or an errno. */
int rewrite_etc_files(const char *cname, const char *extra_hosts) {
  char path[256], buf[512 + sizeof ((struct mount_req *)0)->hosts];
  const char *dns = configured_dns();
  const char *files[2] = {"hosts", "resolv.conf"};
  for (int i = 0; i < 2; i++) {
    if (i == 0) hosts_content(buf, sizeof buf, extra_hosts);
    else if (*dns) snprintf(buf, sizeof buf, "nameserver %s\n", dns);
    else continue;
    snprintf(path, sizeof path, "/run/etc-%s/%s", cname, files[i]);
    int fd = open(path, O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) { if (errno == ENOENT) continue; return errno; }
    size_t len = strlen(buf);
    int err = write(fd, buf, len) == (ssize_t)len ? 0 : (errno ? errno : EIO);
    close(fd);
    if (err) return err;
  }
  return 0;
}

/* Mounts a tmpfs for a "PATH[:OPTS]" spec. The host created PATH as a real
 * directory inside the root; a link there is resolved inside the root. */
static int mount_tmpfs(const char *root, int rootfd, const char *spec, char *msg, size_t cap) {
  struct tmpfs_spec t;
  int e = parse_tmpfs_spec(spec, &t, msg, cap);
  if (e) return e;
  if (mount_at(root, rootfd, t.path, "tmpfs", "tmpfs", t.flags, *t.data ? t.data : NULL) < 0) {
    e = errno;
    snprintf(msg, cap, "tmpfs %s: %s", t.path, strerror(e));
    return e;
  }
  return 0;
}

/* Binds the share's SUB at DEST inside the root (T_BIND). */
static int mount_bind(int rootfd, int sharefd, const struct mount_bind *b, char *msg, size_t cap) {
  /* SUB is one name: O_NOFOLLOW keeps it in the share, and a link is refused */
  int src = sharefd < 0 ? -1 : openat(sharefd, b->sub, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  int r = src < 0 ? -1 : bind_in_root(rootfd, b->dest, src, b->ro), e = errno;
  if (src >= 0) close(src);
  if (r < 0) {
    snprintf(msg, cap, "bind %s on %s: %s", b->sub, b->dest, strerror(e));
    agent_log("%s", msg);
    return e ? e : EINVAL;
  }
  return 0;
}

/* TMPFS and BIND fields, parents before children: all mounts of depth 0, then
 * 1, ... (a tmpfs inside a bind and a bind inside a tmpfs both work). 0, or an
 * errno with MSG set. */
static int mount_tmpfs_and_binds(const char *root, int rootfd, int sharefd, const uint8_t *p, size_t n,
                                 const struct mount_req *m, char *msg, size_t cap) {
  char spec[512];
  struct tmpfs_spec t;
  int r, maxd = 0;
  struct tlv_in it = {p, n};
  while ((r = next_tmpfs(&it, spec, sizeof spec)) != 0) {
    if (r < 0) { snprintf(msg, cap, "tmpfs: bad spec"); return EINVAL; }
    int e = parse_tmpfs_spec(spec, &t, msg, cap);
    if (e) return e;
    if (path_depth(t.path) > maxd) maxd = path_depth(t.path);
  }
  for (int i = 0; i < m->nbinds; i++)
    if (m->binds[i].depth > maxd) maxd = m->binds[i].depth;
  for (int d = 0; d <= maxd; d++) {
    struct tlv_in again = {p, n};
    while (next_tmpfs(&again, spec, sizeof spec) > 0) {
      if (parse_tmpfs_spec(spec, &t, msg, cap) || path_depth(t.path) != d) continue;
      int e = mount_tmpfs(root, rootfd, spec, msg, cap);
      if (e) return e;
    }
    for (int i = 0; i < m->nbinds; i++) {
      if (m->binds[i].depth != d) continue;
      int e = mount_bind(rootfd, sharefd, &m->binds[i], msg, cap);
      if (e) return e;
    }
  }
  return 0;
}

/* Mounts a container root at /c/NAME with the kernel filesystems a container
 * expects: a host-prepared root filesystem (9p tag), or an overlay of two
 * virtio-blk disks (blk.c). Done on request, never at boot, so a clone of a
 * template picks up its own root from scratch. */
void handle_mount_root(const uint8_t *p, size_t n) {
  static struct mount_req m; /* ~40 KiB with its binds */
  char root[128], share[256], msg[256];
  if (parse_mount_root(p, n, &m) < 0) {
    snprintf(msg, sizeof msg, "mount_root: %s", m.why ? m.why : "bad request");
    send_result(EINVAL, msg);
    return;
  }
  if (m.premount) {
    int e = blk_premount(m.upper, msg, sizeof msg);
    send_result(e, e ? msg : NULL);
    return;
  }
  int block = *m.lower != 0;
  snprintf(root, sizeof root, ROOTS "/%s", m.name);
  mkdir_p(root, 0755); /* a failure shows in the mount below */
  /* With a subdir, the share is a directory the host binds roots into (a pool
   * VM's share cannot be swapped, its content can; a pod's holds one root per
   * container). A block root's share only holds what BIND fields bind. A
   * virtio-9p channel can be mounted only once: the share is mounted at
   * /run/share-TAG on first use and reused after. */
  int at_run = *m.sub || block, want_share = !block || m.nbinds > 0;
  snprintf(share, sizeof share, "%s%s", at_run ? "/run/share-" : "", at_run ? m.tag : root);
  struct stat st_share, st_run;
  int mounted = at_run && stat(share, &st_share) == 0 && stat("/run", &st_run) == 0 && st_share.st_dev != st_run.st_dev;
  if (want_share && at_run) mkdir_p(share, 0755);
  if (want_share && !mounted && mount(m.tag, share, "9p", 0, "trans=virtio,version=9p2000.L,msize=262144,cache=mmap,access=client") < 0) {
    int e = errno;
    snprintf(msg, sizeof msg, "mount root %s: %s", m.tag, strerror(e));
    send_result(e, msg);
    return;
  }
  if (block) {
    int e = blk_mount_root(m.name, root, m.lower, m.upper, m.discard_on_exit, m.premounted, msg, sizeof msg);
    if (e) { send_result(e, msg); return; }
  } else if (*m.sub) {
    char src[512];
    snprintf(src, sizeof src, "%s/%s", share, m.sub);
    if (mount(src, root, NULL, MS_BIND | MS_REC, NULL) < 0) {
      int e = errno;
      snprintf(msg, sizeof msg, "bind root %s: %s", m.sub, strerror(e));
      send_result(e, msg);
      return;
    }
  }
  int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0) {
    int e = errno;
    snprintf(msg, sizeof msg, "open root %s: %s", m.name, strerror(e));
    if (block) blk_unmount_root(m.name);
    send_result(e, msg);
    return;
  }
  /* The host prepared nothing inside a block root: /etc may be missing (the
   * files in it are created by bind_etc_file, mount points by mount_in_root). */
  if (block && mkdir_in_root(rootfd, "etc", 0755) < 0) agent_log("mkdir %s/etc: %s", root, strerror(errno));
  /* Failures of these are logged: a root without, say, mqueue still runs most
   * programs, as it always did. */
  mount_at(root, rootfd, "/proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  mount_at(root, rootfd, "/sys", "sysfs", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, NULL);
  mount_at(root, rootfd, "/dev", "tmpfs", "tmpfs", MS_NOSUID, "mode=755,size=65536k");
  make_dev_nodes(rootfd);
  mount_at(root, rootfd, "/dev/pts", "devpts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620");
  mount_at(root, rootfd, "/dev/shm", "shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k");
  mount_at(root, rootfd, "/dev/mqueue", "mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  provide_etc_files(root, rootfd, m.name, m.hosts);
  int sharefd = m.nbinds ? open(share, O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;
  int e = mount_tmpfs_and_binds(root, rootfd, sharefd, p, n, &m, msg, sizeof msg);
  if (sharefd >= 0) close(sharefd);
  close(rootfd);
  /* Docker's --read-only: the root's own mount read-only, once everything in it
   * is in place; the mounts on it (/proc, /dev, the /etc files, tmpfs, binds)
   * keep their own flags. */
  if (!e && m.readonly && mount(NULL, root, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0) {
    e = errno;
    snprintf(msg, sizeof msg, "remount root %s read-only: %s", m.name, strerror(e));
  }
  if (e) {
    if (block) blk_unmount_root(m.name); /* a retry starts from the disks again */
    send_result(e, msg);
    return;
  }
  /* Several roots in one VM (a pod): each gets its own mount namespace. A VM with
   * one root has nothing to hide from it, and the namespace costs ~20 ms under TCG. */
  e = m.isolate ? make_root_ns(m.name) : 0;
  if (e) { send_result(e, "mount namespace for the root"); return; }
  send_result(0, NULL);
}
