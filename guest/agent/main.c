/* hyperbox-agent: PID 1 of a hyperbox guest.
 *
 * It mounts the essentials, opens the virtio-serial control port, says HELLO and
 * then serves the host: it mounts container roots shared by the host (9p), starts
 * processes in them with their own stdio (pipes or a pty), relays their output,
 * delivers signals and window sizes, reaps every child and reports exit statuses.
 * Everything runs in one poll() loop; no allocation is sized by the wire. */
#define _GNU_SOURCE
#include "agent.h"
#include "proto.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <net/route.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#ifndef AGENT_BUILD_ID
#define AGENT_BUILD_ID "dev"
#endif

/* From <linux/random.h>, which musl does not ship. */
struct rand_pool_info { int entropy_count; int buf_size; unsigned buf[]; };
#define RNDADDENTROPY _IOW('R', 0x03, int[2])
#define RNDRESEEDCRNG _IO('R', 0x07)

#define MAX_PROCS 256
#define STDIN_BUF 65536 /* equals the host's stdin window: the host never sends more */
#define CONTROL_PORT "/dev/vport0p1"
#define ROOTS "/c"

struct proc {
  uint32_t id;      /* host's id for this process; 0 = free slot */
  pid_t pid;
  int tty;
  int in_fd, out_fd, err_fd; /* with a tty, in_fd == out_fd == pty master */
  uint8_t *inbuf;
  size_t inlen;
  int in_eof;
  int exited, status, signal;
  unsigned long oom_before; /* the cgroup's oom_kill count when it started */
};

static struct proc procs[MAX_PROCS];
static int channel = -1;

void agent_log(const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  int fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
  if (fd >= 0) { dprintf(fd, "hyperbox-agent: %s\n", buf); close(fd); }
}

static void send_result(int err, const char *msg) {
  struct tlv_out t;
  tlv_reset(&t);
  tlv_put_u32(&t, T_ERRNO, (uint32_t)err);
  if (msg) tlv_put_str(&t, T_MESSAGE, msg);
  hb_send_tlv(HB_RESULT, 0, &t);
}

static void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

/* Copies a TLV string field into a NUL-terminated buffer; refuses embedded NULs. */
static int field_str(const uint8_t *d, uint32_t n, char *out, size_t cap) {
  if (n >= cap || memchr(d, 0, n)) return -1;
  memcpy(out, d, n);
  out[n] = 0;
  return 0;
}

/* Container root names become paths: keep them to a safe alphabet. */
static int valid_name(const char *s) {
  if (!*s || strlen(s) > 64 || s[0] == '.') return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
          *s == '-' || *s == '_' || *s == '.'))
      return 0;
  return 1;
}

static struct proc *find_proc(uint32_t id) {
  for (int i = 0; i < MAX_PROCS; i++)
    if (procs[i].id == id && id) return &procs[i];
  return NULL;
}

/* ---- configuration -------------------------------------------------------- */

static int configure_eth0(const char *cidr, const char *gw, const uint8_t *mac, const char **what);
static void loopback_up(void);
static char dns_server[64];


static void handle_configure(const uint8_t *p, size_t n) {
  struct tlv_in it = {p, n};
  uint8_t tag;
  const uint8_t *d;
  uint32_t len;
  int r;
  char ipv4[32] = "", gw[32] = "";
  uint8_t mac[6];
  int have_mac = 0;
  while ((r = tlv_next(&it, &tag, &d, &len)) == 1) {
    if (tag == T_IPV4) field_str(d, len, ipv4, sizeof ipv4);
    else if (tag == T_MAC && len == 6) { memcpy(mac, d, 6); have_mac = !(mac[0] & 1); /* never a multicast address */ }
    else if (tag == T_GATEWAY) field_str(d, len, gw, sizeof gw);
    else if (tag == T_DNS) field_str(d, len, dns_server, sizeof dns_server);
    else if (tag == T_HOSTNAME && len <= 64) {
      sethostname((const char *)d, len);
    } else if (tag == T_TIME && len == 8) {
      uint64_t ns = be64(d);
      struct timespec ts = {(time_t)(ns / 1000000000ULL), (long)(ns % 1000000000ULL)};
      clock_settime(CLOCK_REALTIME, &ts);
    } else if (tag == T_MEMLIMIT && len == 8) {
      if (limits_set_memory(be64(d)) < 0) { send_result(errno ? errno : EINVAL, "cannot set the memory limit"); return; }
    } else if (tag == T_SEED && len <= 512) {
      /* Mix host randomness into the pool and credit it: clones of one template
       * would otherwise share the template's RNG state. */
      struct { struct rand_pool_info info; uint8_t data[512]; } e;
      e.info.entropy_count = (int)len * 8;
      e.info.buf_size = (int)len;
      memcpy(e.data, d, len);
      int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
      if (fd >= 0) {
        if (ioctl(fd, RNDADDENTROPY, &e) < 0) (void)!write(fd, d, len);
        /* Crediting alone does not reseed an initialised CRNG (Linux >= 5.18):
         * force it, or a clone keeps producing its template's stream. */
        if (ioctl(fd, RNDRESEEDCRNG) < 0) agent_log("RNDRESEEDCRNG: %s", strerror(errno));
        close(fd);
      }
    }
  }
  if (r < 0) { send_result(EINVAL, "malformed configure"); return; }
  loopback_up();
  if (*ipv4) {
    const char *what = "";
    int err = configure_eth0(ipv4, gw, have_mac ? mac : NULL, &what);
    if (err) {
      char msg[128];
      snprintf(msg, sizeof msg, "network: eth0 %s: %s", what, strerror(err));
      send_result(err, msg);
      return;
    }
  }
  send_result(0, NULL);
}

/* ---- network ------------------------------------------------------------------ */


static int if_flags_up(int sk, const char *ifname) {
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
  if (ioctl(sk, SIOCGIFFLAGS, &ifr) < 0) return -1;
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  return ioctl(sk, SIOCSIFFLAGS, &ifr);
}

static void set_sin(struct sockaddr *sa, struct in_addr a) {
  struct sockaddr_in *sin = (struct sockaddr_in *)sa;
  memset(sin, 0, sizeof *sin);
  sin->sin_family = AF_INET;
  sin->sin_addr = a;
}

static void loopback_up(void) {
  int sk = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sk < 0) return;
  if (if_flags_up(sk, "lo") < 0) agent_log("lo up: %s", strerror(errno));
  close(sk);
}

/* Configures eth0 (the virtio-net NIC on QEMU's user-mode network) with an IPv4
 * address "a.b.c.d/prefix" and a default route, with plain ioctls. Returns 0 or
 * an errno; *what names the step that failed. */
static int configure_eth0(const char *cidr, const char *gw, const uint8_t *mac, const char **what) {
  char addr[32];
  struct in_addr a, g, m;
  unsigned prefix = 24;
  const char *slash = strchr(cidr, '/');
  size_t alen = slash ? (size_t)(slash - cidr) : strlen(cidr);
  *what = "address";
  if (alen >= sizeof addr) return EINVAL;
  memcpy(addr, cidr, alen);
  addr[alen] = 0;
  if (slash) prefix = (unsigned)atoi(slash + 1);
  if (prefix > 32 || inet_pton(AF_INET, addr, &a) != 1) return EINVAL;
  m.s_addr = htonl(prefix ? 0xffffffffu << (32 - prefix) : 0);
  int sk = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sk < 0) return errno;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, IFNAMSIZ, "eth0");
  int err = 0;
  if (mac) {
    /* A clone's NIC has its template's MAC: on a shared bridge every VM needs its own. */
    *what = "mac address";
    ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
    memcpy(ifr.ifr_hwaddr.sa_data, mac, 6);
    if (ioctl(sk, SIOCSIFHWADDR, &ifr) < 0) { err = errno; goto out; }
    *what = "address";
  }
  set_sin(&ifr.ifr_addr, a);
  if (ioctl(sk, SIOCSIFADDR, &ifr) < 0) { err = errno; goto out; }
  *what = "netmask";
  set_sin(&ifr.ifr_netmask, m);
  if (ioctl(sk, SIOCSIFNETMASK, &ifr) < 0) { err = errno; goto out; }
  *what = "link up";
  if (if_flags_up(sk, "eth0") < 0) { err = errno; goto out; }
  if (gw && *gw) {
    *what = "gateway";
    if (inet_pton(AF_INET, gw, &g) != 1) { err = EINVAL; goto out; }
    struct rtentry rt;
    memset(&rt, 0, sizeof rt);
    struct in_addr any = {0};
    set_sin(&rt.rt_dst, any);
    set_sin(&rt.rt_genmask, any);
    set_sin(&rt.rt_gateway, g);
    rt.rt_flags = RTF_UP | RTF_GATEWAY;
    rt.rt_dev = "eth0";
    if (ioctl(sk, SIOCADDRT, &rt) < 0 && errno != EEXIST) { err = errno; goto out; }
  }
out:
  close(sk);
  return err;
}

static int mkdir_p(const char *path, mode_t mode) {
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

static int mount_at(const char *root, const char *sub, const char *src, const char *type,
                    unsigned long flags, const char *opts) {
  char target[512];
  snprintf(target, sizeof target, "%s%s", root, sub);
  mkdir_p(target, 0755);
  if (mount(src, target, type, flags, opts) < 0) {
    agent_log("mount %s on %s: %s", type, target, strerror(errno));
    return -1;
  }
  return 0;
}

static void make_dev_nodes(const char *root) {
  static const struct { const char *name; unsigned maj, min; } nodes[] = {
      {"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9},
      {"tty", 5, 0},
  };
  char path[512];
  for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
    snprintf(path, sizeof path, "%s/dev/%s", root, nodes[i].name);
    mknod(path, S_IFCHR | 0666, makedev(nodes[i].maj, nodes[i].min));
    chmod(path, 0666);
  }
  static const struct { const char *name, *target; } links[] = {
      {"ptmx", "pts/ptmx"}, {"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"},
      {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"},
  };
  for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
    snprintf(path, sizeof path, "%s/dev/%s", root, links[i].name);
    symlink(links[i].target, path);
  }
}

/* Writes a file in the agent's own tmpfs and bind-mounts it over ROOT/etc/NAME,
 * as Docker does for hostname/hosts/resolv.conf: the image is left untouched. */
static void bind_etc_file(const char *root, const char *cname, const char *file, const char *content) {
  char src[256], dst[512];
  snprintf(src, sizeof src, "/run/etc-%s", cname);
  mkdir_p(src, 0755);
  snprintf(src, sizeof src, "/run/etc-%s/%s", cname, file);
  int fd = open(src, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  (void)!write(fd, content, strlen(content));
  close(fd);
  snprintf(dst, sizeof dst, "%s/etc", root);
  struct stat st;
  if (lstat(dst, &st) < 0 || !S_ISDIR(st.st_mode)) return; /* no /etc, or a symlink: leave it */
  snprintf(dst, sizeof dst, "%s/etc/%s", root, file);
  if (lstat(dst, &st) < 0) {
    fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd >= 0) close(fd);
  } else if (!S_ISREG(st.st_mode)) {
    return;
  }
  if (mount(src, dst, NULL, MS_BIND, NULL) < 0) agent_log("bind %s: %s", dst, strerror(errno));
}

static void provide_etc_files(const char *root, const char *cname) {
  char host[65] = "", buf[512];
  gethostname(host, sizeof host - 1);
  snprintf(buf, sizeof buf, "%s\n", host);
  bind_etc_file(root, cname, "hostname", buf);
  snprintf(buf, sizeof buf, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t%s\n", host);
  bind_etc_file(root, cname, "hosts", buf);
  if (*dns_server) {
    snprintf(buf, sizeof buf, "nameserver %s\n", dns_server);
    bind_etc_file(root, cname, "resolv.conf", buf);
  }
}

/* Mounts a tmpfs at ROOT/PATH for a "PATH[:OPTS]" spec (Docker's --tmpfs syntax).
 * The host created PATH as a real directory inside the root before the start. */
static int mount_tmpfs(const char *root, const char *spec, char *msg, size_t cap) {
  char path[512], data[256] = "";
  unsigned long flags = MS_NOSUID | MS_NODEV | MS_NOEXEC;
  const char *colon = strchr(spec, ':');
  size_t plen = colon ? (size_t)(colon - spec) : strlen(spec);
  if (plen == 0 || plen >= sizeof path || spec[0] != '/' || strstr(spec, "/..")) {
    snprintf(msg, cap, "tmpfs: bad path");
    return EINVAL;
  }
  memcpy(path, spec, plen);
  path[plen] = 0;
  if (colon) {
    char opts[256], *save = NULL;
    snprintf(opts, sizeof opts, "%s", colon + 1);
    for (char *o = strtok_r(opts, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
      if (!strcmp(o, "ro")) flags |= MS_RDONLY;
      else if (!strcmp(o, "rw")) flags &= ~MS_RDONLY;
      else if (!strcmp(o, "exec")) flags &= ~MS_NOEXEC;
      else if (!strcmp(o, "noexec")) flags |= MS_NOEXEC;
      else if (!strcmp(o, "suid")) flags &= ~MS_NOSUID;
      else if (!strcmp(o, "nosuid")) flags |= MS_NOSUID;
      else if (!strcmp(o, "dev")) flags &= ~MS_NODEV;
      else if (!strcmp(o, "nodev")) flags |= MS_NODEV;
      else if (!strncmp(o, "size=", 5) || !strncmp(o, "mode=", 5) || !strncmp(o, "uid=", 4) || !strncmp(o, "gid=", 4) || !strncmp(o, "nr_inodes=", 10)) {
        if (strlen(data) + strlen(o) + 2 < sizeof data) { if (*data) strcat(data, ","); strcat(data, o); }
      }
    }
  }
  if (mount_at(root, path, "tmpfs", "tmpfs", flags, *data ? data : NULL) < 0) {
    int e = errno;
    snprintf(msg, cap, "tmpfs %s: %s", path, strerror(e));
    return e;
  }
  return 0;
}

/* ---- a mount namespace per container root ------------------------------------ */

/* Each mounted root gets its own mount namespace, a copy of the agent's from
 * which every other container's root (and the 9p share holding a pod's roots)
 * is detached: a container's processes join it, so its mounts stay its own and
 * even a chroot escape finds no other container's files. The agent itself
 * stays in the initial namespace (it is single-threaded, as setns requires). */
#define MAX_ROOTS 64
static struct { char name[80]; int fd; } root_ns[MAX_ROOTS];
static int init_ns_fd = -1;

static int root_ns_fd(const char *name) {
  for (int i = 0; i < MAX_ROOTS; i++)
    if (root_ns[i].fd > 0 && strcmp(root_ns[i].name, name) == 0) return root_ns[i].fd;
  return -1;
}

static int make_root_ns(const char *name) {
  char self[128], line[1024], victims[128][128];
  int nv = 0, slot = -1, fd;
  if (init_ns_fd < 0 && (init_ns_fd = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC)) < 0) return errno;
  for (int i = 0; i < MAX_ROOTS && slot < 0; i++)
    if (root_ns[i].fd > 0 && strcmp(root_ns[i].name, name) == 0) slot = i;
  for (int i = 0; i < MAX_ROOTS && slot < 0; i++)
    if (root_ns[i].fd <= 0) slot = i;
  if (slot < 0) return ENOSPC;
  snprintf(self, sizeof self, ROOTS "/%s", name);
  size_t sl = strlen(self);
  if (unshare(CLONE_NEWNS) < 0) return errno;
  FILE *f = fopen("/proc/self/mountinfo", "re");
  while (f && fgets(line, sizeof line, f) && nv < 128) {
    char mp[512];
    if (sscanf(line, "%*s %*s %*s %*s %511s", mp) != 1 || strchr(mp, '\\')) continue;
    int mine = strncmp(mp, self, sl) == 0 && (mp[sl] == 0 || mp[sl] == '/');
    if ((strncmp(mp, ROOTS "/", sizeof ROOTS) == 0 && !mine) || strncmp(mp, "/run/share-", 11) == 0)
      snprintf(victims[nv++], sizeof victims[0], "%s", mp);
  }
  if (f) fclose(f);
  for (int i = 0; i < nv; i++) umount2(victims[i], MNT_DETACH); /* a parent's detach may have taken it already */
  fd = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
  int e = fd < 0 ? errno : 0;
  if (setns(init_ns_fd, CLONE_NEWNS) < 0) {
    /* cannot happen to a single-threaded PID 1; if it does, say so loudly */
    agent_log("setns back to the initial mount namespace: %s", strerror(errno));
    if (fd >= 0) close(fd);
    return errno;
  }
  if (e) return e;
  if (root_ns[slot].fd > 0) close(root_ns[slot].fd);
  snprintf(root_ns[slot].name, sizeof root_ns[slot].name, "%s", name);
  root_ns[slot].fd = fd;
  return 0;
}

/* Mounts a host-prepared root filesystem (9p tag) at /c/NAME with the kernel
 * filesystems a container expects. Done on request, never at boot, so a clone of
 * a template picks up its own root from scratch. */
static void handle_mount_root(const uint8_t *p, size_t n) {
  struct tlv_in it = {p, n};
  uint8_t tag;
  const uint8_t *d;
  uint32_t len;
  char mtag[64] = "", name[80] = "", sub[80] = "", root[128], share[256];
  int isolate = 0;
  while (tlv_next(&it, &tag, &d, &len) == 1) {
    if (tag == T_TMPFS) continue; /* after the root is mounted, below */
    if (tag == T_ISOLATE && len == 4) isolate = be32(d) != 0;
    if (tag == T_TAG) field_str(d, len, mtag, sizeof mtag);
    if (tag == T_NAME) field_str(d, len, name, sizeof name);
    if (tag == T_SUBDIR) field_str(d, len, sub, sizeof sub);
  }
  if (!valid_name(mtag) || !valid_name(name) || (*sub && !valid_name(sub))) { send_result(EINVAL, "mount_root: bad tag, name or subdir"); return; }
  snprintf(root, sizeof root, ROOTS "/%s", name);
  mkdir_p(root, 0755);
  /* With a subdir, the share is a directory the host binds roots into (a pool
   * VM's share cannot be swapped, its content can; a pod's holds one root per
   * container). A virtio-9p channel can be mounted only once: the share is
   * mounted at /run/share-TAG on first use and reused after. */
  snprintf(share, sizeof share, "%s%s", *sub ? "/run/share-" : "", *sub ? mtag : root);
  struct stat st_share, st_run;
  int mounted = *sub && stat(share, &st_share) == 0 && stat("/run", &st_run) == 0 && st_share.st_dev != st_run.st_dev;
  if (*sub) mkdir_p(share, 0755);
  if (!mounted && mount(mtag, share, "9p", 0, "trans=virtio,version=9p2000.L,msize=262144,cache=mmap,access=client") < 0) {
    char msg[256];
    snprintf(msg, sizeof msg, "mount root %s: %s", mtag, strerror(errno));
    send_result(errno, msg);
    return;
  }
  if (*sub) {
    char src[512];
    snprintf(src, sizeof src, "%s/%s", share, sub);
    if (mount(src, root, NULL, MS_BIND | MS_REC, NULL) < 0) {
      char msg[256];
      snprintf(msg, sizeof msg, "bind root %s: %s", sub, strerror(errno));
      send_result(errno, msg);
      return;
    }
  }
  mount_at(root, "/proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  mount_at(root, "/sys", "sysfs", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, NULL);
  mount_at(root, "/dev", "tmpfs", "tmpfs", MS_NOSUID, "mode=755,size=65536k");
  make_dev_nodes(root);
  mount_at(root, "/dev/pts", "devpts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620");
  mount_at(root, "/dev/shm", "shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k");
  mount_at(root, "/dev/mqueue", "mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  provide_etc_files(root, name);
  it = (struct tlv_in){p, n};
  while (tlv_next(&it, &tag, &d, &len) == 1) {
    char spec[512], msg[256];
    if (tag != T_TMPFS) continue;
    if (field_str(d, len, spec, sizeof spec)) { send_result(EINVAL, "tmpfs: bad spec"); return; }
    int e = mount_tmpfs(root, spec, msg, sizeof msg);
    if (e) { send_result(e, msg); return; }
  }
  /* Several roots in one VM (a pod): each gets its own mount namespace. A VM with
   * one root has nothing to hide from it, and the namespace costs ~20 ms under TCG. */
  int e = isolate ? make_root_ns(name) : 0;
  if (e) { send_result(e, "mount namespace for the root"); return; }
  send_result(0, NULL);
}

/* ---- process start ---------------------------------------------------------- */

struct start_req {
  char name[80], cwd[1024], user[256];
  char *argv[257], *envp[513];
  int argc, envc, tty, want_stdin;
  unsigned rows, cols;
  char strings[HB_MAX_PAYLOAD + 1024]; /* argv/env storage, bounded by the frame */
  size_t used;
};

static char *store(struct start_req *r, const uint8_t *d, uint32_t n) {
  if (memchr(d, 0, n) || r->used + n + 1 > sizeof r->strings) return NULL;
  char *s = r->strings + r->used;
  memcpy(s, d, n);
  s[n] = 0;
  r->used += n + 1;
  return s;
}

static int parse_start(const uint8_t *p, size_t n, struct start_req *r) {
  struct tlv_in it = {p, n};
  uint8_t tag;
  const uint8_t *d;
  uint32_t len;
  int rc;
  memset(r, 0, offsetof(struct start_req, strings));
  r->used = 0;
  strcpy(r->cwd, "/");
  while ((rc = tlv_next(&it, &tag, &d, &len)) == 1) {
    switch (tag) {
    case T_NAME: if (field_str(d, len, r->name, sizeof r->name)) return -1; break;
    case T_CWD: if (field_str(d, len, r->cwd, sizeof r->cwd)) return -1; break;
    case T_USER: if (field_str(d, len, r->user, sizeof r->user)) return -1; break;
    case T_ARG:
      if (r->argc >= 256 || !(r->argv[r->argc++] = store(r, d, len))) return -1;
      break;
    case T_ENV:
      if (r->envc >= 512 || !(r->envp[r->envc++] = store(r, d, len))) return -1;
      break;
    case T_TTY: r->tty = len == 4 && be32(d); break;
    case T_STDIN: r->want_stdin = len == 4 && be32(d); break;
    case T_ROWS: if (len == 4) r->rows = be32(d) & 0xffff; break;
    case T_COLS: if (len == 4) r->cols = be32(d) & 0xffff; break;
    }
  }
  if (rc < 0 || r->argc == 0 || !valid_name(r->name) || r->cwd[0] != '/') return -1;
  return 0;
}

static const char *env_path(struct start_req *r) {
  for (int i = 0; i < r->envc; i++)
    if (strncmp(r->envp[i], "PATH=", 5) == 0) return r->envp[i] + 5;
  return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
}

/* Runs in the child after chroot: finds the program like Go's exec.LookPath (as
 * runc does) and execs it. Returns only on failure, with errno set and a message
 * worded as Docker words it (the CLI maps the wording to exit codes 126/127). */
static void exec_in_child(struct start_req *r, char *msg, size_t cap) {
  const char *file = r->argv[0];
  if (strchr(file, '/')) {
    execve(file, r->argv, r->envp);
    int e = errno;
    if (e == ENOENT) snprintf(msg, cap, "exec: \"%s\": stat %s: no such file or directory", file, file);
    else snprintf(msg, cap, "exec: \"%s\": %s", file, e == EACCES ? "permission denied" : strerror(e));
    errno = e;
    return;
  }
  char path[4096], cand[4096];
  snprintf(path, sizeof path, "%s", env_path(r));
  char *save = NULL;
  for (char *dir = strtok_r(path, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
    struct stat st;
    snprintf(cand, sizeof cand, "%s/%s", *dir ? dir : ".", file);
    if (stat(cand, &st) < 0 || !S_ISREG(st.st_mode) || !(st.st_mode & 0111)) continue;
    execve(cand, r->argv, r->envp);
    int e = errno;
    snprintf(msg, cap, "exec: \"%s\": %s", cand, e == EACCES ? "permission denied" : strerror(e));
    errno = e;
    return;
  }
  snprintf(msg, cap, "exec: \"%s\": executable file not found in $PATH", file);
  errno = ENOENT;
}

struct child_error { int err; char msg[400]; };

static void child_fail(int fd, int err, const char *msg) {
  struct child_error ce = {err, ""};
  snprintf(ce.msg, sizeof ce.msg, "%s", msg);
  (void)!write(fd, &ce, sizeof ce);
  _exit(127);
}

static int open_pty(const char *root, int *master, char *slave, size_t cap) {
  char ptmx[256];
  snprintf(ptmx, sizeof ptmx, "%s/dev/pts/ptmx", root);
  int m = open(ptmx, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (m < 0) return -1;
  int unlock = 0, num;
  if (ioctl(m, TIOCSPTLCK, &unlock) < 0 || ioctl(m, TIOCGPTN, &num) < 0) { close(m); return -1; }
  snprintf(slave, cap, "%s/dev/pts/%d", root, num);
  *master = m;
  return 0;
}

static void start_failed(uint32_t id, int err, const char *msg) {
  struct tlv_out t;
  tlv_reset(&t);
  tlv_put_u32(&t, T_ERRNO, (uint32_t)err);
  tlv_put_str(&t, T_MESSAGE, msg);
  hb_send_tlv(HB_START_FAILED, id, &t);
}

static void handle_start(uint32_t id, const uint8_t *p, size_t n) {
  static struct start_req r;
  char root[128], err[300], slave[256];
  unsigned uid, gid;
  struct proc *slot = NULL;
  if (id == 0 || find_proc(id)) { start_failed(id, EEXIST, "process id in use"); return; }
  if (parse_start(p, n, &r) < 0) { start_failed(id, EINVAL, "malformed start request"); return; }
  for (int i = 0; i < MAX_PROCS && !slot; i++)
    if (!procs[i].id) slot = &procs[i];
  if (!slot) { start_failed(id, EAGAIN, "too many processes"); return; }
  snprintf(root, sizeof root, ROOTS "/%s", r.name);
  if (access(root, F_OK) < 0) { start_failed(id, ENOENT, "container root not mounted"); return; }
  if (resolve_user(root, r.user, &uid, &gid, err, sizeof err) < 0) { start_failed(id, EINVAL, err); return; }

  int in[2] = {-1, -1}, out[2] = {-1, -1}, errp[2] = {-1, -1}, status[2], master = -1;
  if (pipe2(status, O_CLOEXEC) < 0) { start_failed(id, errno, "pipe"); return; }
  if (r.tty) {
    if (open_pty(root, &master, slave, sizeof slave) < 0) {
      start_failed(id, errno, "cannot allocate a pty");
      close(status[0]); close(status[1]);
      return;
    }
    struct winsize ws = {(unsigned short)(r.rows ? r.rows : 24), (unsigned short)(r.cols ? r.cols : 80), 0, 0};
    ioctl(master, TIOCSWINSZ, &ws);
  } else if ((r.want_stdin && pipe2(in, O_CLOEXEC) < 0) || pipe2(out, O_CLOEXEC) < 0 ||
             pipe2(errp, O_CLOEXEC) < 0) {
    start_failed(id, errno, "pipe");
    return;
  }

  pid_t pid = fork();
  if (pid == 0) {
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    signal(SIGPIPE, SIG_DFL);
    close(status[0]);
    limits_join();
    setsid();
    if (r.tty) {
      int s = open(slave, O_RDWR);
      if (s < 0) child_fail(status[1], errno, "open pty slave");
      ioctl(s, TIOCSCTTY, 0);
      dup2(s, 0); dup2(s, 1); dup2(s, 2);
      if (s > 2) close(s);
    } else {
      int devnull = open("/dev/null", O_RDWR);
      dup2(r.want_stdin ? in[0] : devnull, 0);
      dup2(out[1], 1);
      dup2(errp[1], 2);
    }
    int nsfd = root_ns_fd(r.name);
    if (nsfd >= 0 && setns(nsfd, CLONE_NEWNS) < 0) child_fail(status[1], errno, "join the container's mount namespace");
    if (chroot(root) < 0 || chdir("/") < 0) child_fail(status[1], errno, "chroot");
    if (mkdir_p(r.cwd, 0755) < 0 || chdir(r.cwd) < 0) {
      snprintf(err, sizeof err, "chdir to cwd (\"%s\") set in config.json failed: %s", r.cwd, strerror(errno));
      child_fail(status[1], errno, err);
    }
    gid_t g = gid;
    if (setgroups(1, &g) < 0 || setgid(gid) < 0 || setuid(uid) < 0) child_fail(status[1], errno, "setuid");
    r.argv[r.argc] = NULL;
    r.envp[r.envc] = NULL;
    exec_in_child(&r, err, sizeof err);
    child_fail(status[1], errno, err);
  }
  close(status[1]);
  if (r.tty) {
    /* nothing to close on our side: the child opened the slave itself */
  } else {
    if (in[0] >= 0) close(in[0]);
    close(out[1]);
    close(errp[1]);
  }
  if (pid < 0) {
    start_failed(id, errno, "fork");
    close(status[0]);
    if (master >= 0) close(master);
    if (in[1] >= 0) close(in[1]);
    if (out[0] >= 0) { close(out[0]); close(errp[0]); }
    return;
  }
  struct child_error ce;
  ssize_t got;
  do got = read(status[0], &ce, sizeof ce); while (got < 0 && errno == EINTR);
  close(status[0]);
  if (got == (ssize_t)sizeof ce) {
    /* exec failed: the child is gone; its zombie is reaped by the main loop
     * (it matches no slot). */
    ce.msg[sizeof ce.msg - 1] = 0;
    start_failed(id, ce.err, ce.msg);
    if (master >= 0) close(master);
    if (in[1] >= 0) close(in[1]);
    if (out[0] >= 0) { close(out[0]); close(errp[0]); }
    return;
  }
  memset(slot, 0, sizeof *slot);
  slot->id = id;
  slot->pid = pid;
  slot->oom_before = limits_oom_kills();
  slot->tty = r.tty;
  if (r.tty) {
    slot->in_fd = slot->out_fd = master;
    slot->err_fd = -1;
    slot->in_eof = !r.want_stdin;
  } else {
    slot->in_fd = in[1];
    slot->out_fd = out[0];
    slot->err_fd = errp[0];
    slot->in_eof = in[1] < 0;
  }
  if (slot->in_fd >= 0) set_nonblock(slot->in_fd);
  if (slot->out_fd >= 0) set_nonblock(slot->out_fd);
  if (slot->err_fd >= 0) set_nonblock(slot->err_fd);
  if (r.want_stdin) slot->inbuf = malloc(STDIN_BUF);
  struct tlv_out t;
  tlv_reset(&t);
  tlv_put_u32(&t, T_PID, (uint32_t)pid);
  hb_send_tlv(HB_STARTED, id, &t);
}

/* ---- stdio relay ------------------------------------------------------------ */

/* Reads what is available on one output fd and forwards it. Returns 0 on EOF or
 * a terminal error (the fd is then closed), 1 if more may come. */
static int pump_output(struct proc *pr, int *fd, uint8_t type) {
  static uint8_t buf[32768];
  ssize_t n = read(*fd, buf, sizeof buf);
  if (n > 0) { hb_send(type, pr->id, buf, (size_t)n); return 1; }
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 1;
  /* EOF, or EIO from a pty master whose slave side is all closed */
  if (*fd != pr->in_fd) close(*fd);
  *fd = -1;
  return 0;
}

static void close_stdin(struct proc *pr) {
  if (pr->in_fd >= 0 && pr->in_fd != pr->out_fd) close(pr->in_fd);
  if (pr->in_fd != pr->out_fd) pr->in_fd = -1;
  free(pr->inbuf);
  pr->inbuf = NULL;
  pr->inlen = 0;
}

static void flush_stdin(struct proc *pr) {
  if (pr->inlen > 0 && pr->in_fd >= 0) {
    ssize_t w = write(pr->in_fd, pr->inbuf, pr->inlen);
    if (w > 0) {
      memmove(pr->inbuf, pr->inbuf + w, pr->inlen - (size_t)w);
      pr->inlen -= (size_t)w;
      struct tlv_out t;
      tlv_reset(&t);
      tlv_put_u32(&t, T_COUNT, (uint32_t)w);
      hb_send_tlv(HB_STDIN_WINDOW, pr->id, &t);
    } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
      pr->inlen = 0; /* reader gone (EPIPE): drop what is left */
      if (!pr->tty) close_stdin(pr);
    }
  }
  if (pr->in_eof && pr->inlen == 0 && !pr->tty && pr->in_fd >= 0) close_stdin(pr);
}

static void finish_if_done(struct proc *pr) {
  if (!pr->exited) return;
  /* The process is gone: forward what is still buffered, then report. Output
   * of background children that outlive it is not waited for (as with Docker). */
  for (int rounds = 0; rounds < 64 && (pr->out_fd >= 0 || pr->err_fd >= 0); rounds++) {
    int more = 0;
    if (pr->out_fd >= 0) {
      int fd = pr->out_fd;
      if (pump_output(pr, &pr->out_fd, HB_STDOUT) && pr->out_fd == fd) {
        int avail = 0;
        if (ioctl(fd, FIONREAD, &avail) == 0 && avail > 0) more = 1;
      }
    }
    if (pr->err_fd >= 0) {
      int fd = pr->err_fd;
      if (pump_output(pr, &pr->err_fd, HB_STDERR) && pr->err_fd == fd) {
        int avail = 0;
        if (ioctl(fd, FIONREAD, &avail) == 0 && avail > 0) more = 1;
      }
    }
    if (!more) break;
  }
  if (pr->out_fd >= 0) close(pr->out_fd);
  if (pr->err_fd >= 0) close(pr->err_fd);
  if (pr->in_fd >= 0 && pr->in_fd != pr->out_fd) close(pr->in_fd);
  free(pr->inbuf);
  struct tlv_out t;
  tlv_reset(&t);
  tlv_put_u32(&t, T_STATUS, (uint32_t)pr->status);
  tlv_put_u32(&t, T_SIGNAL, (uint32_t)pr->signal);
  if (limits_oom_kills() > pr->oom_before) tlv_put_u32(&t, T_OOM, 1);
  hb_send_tlv(HB_EXIT, pr->id, &t);
  memset(pr, 0, sizeof *pr);
}

static void reap_children(void) {
  int st;
  pid_t pid;
  while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
    for (int i = 0; i < MAX_PROCS; i++) {
      struct proc *pr = &procs[i];
      if (!pr->id || pr->pid != pid) continue;
      pr->exited = 1;
      if (WIFSIGNALED(st)) { pr->signal = WTERMSIG(st); pr->status = 128 + pr->signal; }
      else pr->status = WEXITSTATUS(st);
      finish_if_done(pr);
    }
  }
}

/* ---- control channel -------------------------------------------------------- */

static void handle_frame(uint8_t type, uint32_t id, const uint8_t *p, size_t n) {
  struct proc *pr = id ? find_proc(id) : NULL;
  switch (type) {
  case HB_CONFIGURE: handle_configure(p, n); break;
  case HB_MOUNT_ROOT: handle_mount_root(p, n); break;
  case HB_PING: hb_send(HB_PONG, id, NULL, 0); break;
  case HB_STATS: handle_stats(); break;
  case HB_POWEROFF: sync(); reboot(RB_POWER_OFF); break;
  case HB_START: handle_start(id, p, n); break;
  case HB_STDIN:
    if (pr && pr->inbuf && !pr->in_eof) {
      size_t take = n > STDIN_BUF - pr->inlen ? STDIN_BUF - pr->inlen : n;
      if (take < n) agent_log("stdin overflow on %u: host ignored the window", id);
      memcpy(pr->inbuf + pr->inlen, p, take);
      pr->inlen += take;
      flush_stdin(pr);
    }
    break;
  case HB_STDIN_EOF:
    if (pr) { pr->in_eof = 1; flush_stdin(pr); }
    break;
  case HB_SIGNAL: {
    struct tlv_in it = {p, n};
    uint8_t tag; const uint8_t *d; uint32_t len;
    while (pr && tlv_next(&it, &tag, &d, &len) == 1)
      if (tag == T_SIGNAL && len == 4 && be32(d) >= 1 && be32(d) <= 64) kill(pr->pid, (int)be32(d));
    break;
  }
  case HB_RESIZE: {
    struct tlv_in it = {p, n};
    uint8_t tag; const uint8_t *d; uint32_t len;
    struct winsize ws = {0, 0, 0, 0};
    while (tlv_next(&it, &tag, &d, &len) == 1) {
      if (tag == T_ROWS && len == 4) ws.ws_row = (unsigned short)be32(d);
      if (tag == T_COLS && len == 4) ws.ws_col = (unsigned short)be32(d);
    }
    if (pr && pr->tty && ws.ws_row && ws.ws_col) ioctl(pr->out_fd, TIOCSWINSZ, &ws);
    break;
  }
  default: agent_log("unknown frame type %u", type);
  }
}

static uint8_t rx[HB_HEADER_SIZE + HB_MAX_PAYLOAD];
static size_t rx_len;

static void read_channel(void) {
  ssize_t n = read(channel, rx + rx_len, sizeof rx - rx_len);
  if (n <= 0) {
    if (n < 0 && errno != EAGAIN && errno != EINTR) agent_log("control read: %s", strerror(errno));
    if (n == 0) usleep(10000); /* host not connected: virtio-serial reports EOF */
    return;
  }
  rx_len += (size_t)n;
  size_t off = 0;
  while (rx_len - off >= HB_HEADER_SIZE) {
    uint32_t len = be32(rx + off);
    if (len > HB_MAX_PAYLOAD || rx[off + 5] != HB_PROTO_VERSION) {
      agent_log("bad frame (len %u, version %u): resetting channel", len, rx[off + 5]);
      rx_len = off = 0;
      return;
    }
    if (rx_len - off < HB_HEADER_SIZE + len) break;
    handle_frame(rx[off + 4], be32(rx + off + 8), rx + off + HB_HEADER_SIZE, len);
    off += HB_HEADER_SIZE + len;
  }
  memmove(rx, rx + off, rx_len - off);
  rx_len -= off;
}

static void send_hello(void) {
  struct tlv_out t;
  tlv_reset(&t);
  tlv_put_u32(&t, T_VERSION, HB_PROTO_VERSION);
  tlv_put_str(&t, T_MESSAGE, AGENT_BUILD_ID);
  hb_send_tlv(HB_HELLO, 0, &t);
}

static void early_mounts(void) {
  mount("proc", "/proc", "proc", 0, NULL);
  mount("sysfs", "/sys", "sysfs", 0, NULL);
  mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
  mkdir(ROOTS, 0755);
  mkdir("/run", 0755);
  mount("tmpfs", "/run", "tmpfs", 0, "mode=755");
  mount("tmpfs", ROOTS, "tmpfs", 0, "mode=755");
  mkdir("/sys/fs/cgroup", 0755);
  mount("cgroup2", "/sys/fs/cgroup", "cgroup2", 0, NULL);
}

int main(void) {
  if (getpid() != 1) { fprintf(stderr, "hyperbox-agent must run as PID 1 in a guest\n"); return 1; }
  early_mounts();
  signal(SIGPIPE, SIG_IGN);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

  for (int tries = 0; (channel = open(CONTROL_PORT, O_RDWR | O_CLOEXEC)) < 0; tries++) {
    if (tries == 500) { agent_log("no control port %s: %s", CONTROL_PORT, strerror(errno)); reboot(RB_POWER_OFF); }
    usleep(10000);
  }
  hb_set_channel(channel);
  loopback_up();
  send_hello();

  struct pollfd fds[2 + 3 * MAX_PROCS];
  struct { struct proc *pr; int which; } map[2 + 3 * MAX_PROCS];
  for (;;) {
    int nf = 0;
    fds[nf++] = (struct pollfd){channel, POLLIN, 0};
    fds[nf++] = (struct pollfd){sfd, POLLIN, 0};
    for (int i = 0; i < MAX_PROCS; i++) {
      struct proc *pr = &procs[i];
      if (!pr->id) continue;
      if (pr->out_fd >= 0) { map[nf].pr = pr; map[nf].which = 1; fds[nf++] = (struct pollfd){pr->out_fd, POLLIN, 0}; }
      if (pr->err_fd >= 0) { map[nf].pr = pr; map[nf].which = 2; fds[nf++] = (struct pollfd){pr->err_fd, POLLIN, 0}; }
      if (pr->in_fd >= 0 && pr->inlen > 0) { map[nf].pr = pr; map[nf].which = 0; fds[nf++] = (struct pollfd){pr->in_fd, POLLOUT, 0}; }
    }
    if (poll(fds, (nfds_t)nf, -1) < 0) continue;
    if (fds[0].revents) read_channel();
    if (fds[1].revents) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) > 0) {}
      reap_children();
    }
    for (int i = 2; i < nf; i++) {
      struct proc *pr = map[i].pr;
      if (!fds[i].revents || !pr->id) continue;
      if (map[i].which == 1 && pr->out_fd == fds[i].fd) pump_output(pr, &pr->out_fd, HB_STDOUT);
      else if (map[i].which == 2 && pr->err_fd == fds[i].fd) pump_output(pr, &pr->err_fd, HB_STDERR);
      else if (map[i].which == 0 && pr->in_fd == fds[i].fd) flush_stdin(pr);
    }
  }
}
