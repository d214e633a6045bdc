/* Request payload parsers: see request.h. Pure functions over bounded input. */
#include "request.h"
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <sys/mount.h>

int field_str(const uint8_t *d, uint32_t n, char *out, size_t cap) {
  if (n >= cap || memchr(d, 0, n)) return -1;
  memcpy(out, d, n);
  out[n] = 0;
  return 0;
}

/* A letter, digit, '-', '_' or '.': what names (roots, tags, hosts) are made of. */
static int name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}

int valid_name(const char *s) {
  if (!*s || strlen(s) > 64 || s[0] == '.') return 0;
  for (; *s; s++)
    if (!name_char(*s)) return 0;
  return 1;
}

/* ---- configure ---------------------------------------------------------------- */

int parse_configure(const uint8_t *p, size_t n, struct configure_req *c) {
  struct tlv_in it = {p, n};
  uint8_t tag;
  const uint8_t *d;
  uint32_t len;
  int r;
  memset(c, 0, sizeof *c);
  while ((r = tlv_next(&it, &tag, &d, &len)) == 1) {
    /* A field that does not fit is ignored, as the agent always did. */
    if (tag == T_IPV4) (void)field_str(d, len, c->ipv4, sizeof c->ipv4);
    else if (tag == T_MAC && len == 6) { memcpy(c->mac, d, 6); c->have_mac = !(c->mac[0] & 1); /* never a multicast address */ }
    else if (tag == T_GATEWAY) (void)field_str(d, len, c->gw, sizeof c->gw);
    else if (tag == T_DNS) { if (field_str(d, len, c->dns, sizeof c->dns) == 0) c->have_dns = 1; }
    else if (tag == T_HOSTNAME && len <= 64) { c->hostname = d; c->hostname_len = len; c->have_hostname = 1; }
    else if (tag == T_TIME && len == 8) { c->time_ns = be64(d); c->have_time = 1; }
    else if (tag == T_MEMLIMIT && len == 8) { c->memlimit = be64(d); c->have_memlimit = 1; }
    else if (tag == T_SEED && len <= 512) { c->seed = d; c->seed_len = len; c->have_seed = 1; }
  }
  return r < 0 ? -1 : 0;
}

int parse_ipv4_cidr(const char *cidr, struct in_addr *addr, struct in_addr *mask) {
  char a[32];
  unsigned prefix = 24;
  const char *slash = strchr(cidr, '/');
  size_t alen = slash ? (size_t)(slash - cidr) : strlen(cidr);
  if (alen >= sizeof a) return EINVAL;
  memcpy(a, cidr, alen);
  a[alen] = 0;
  if (slash) {
    /* atoi's leniency ("24x" is 24), without its undefined overflow */
    long v = strtol(slash + 1, NULL, 10);
    prefix = v < 0 || v > 32 ? 33 : (unsigned)v;
  }
  if (prefix > 32 || inet_pton(AF_INET, a, addr) != 1) return EINVAL;
  mask->s_addr = htonl(prefix ? 0xffffffffu << (32 - prefix) : 0);
  return 0;
}

/* ---- mount root ----------------------------------------------------------------- */

/* "IP NAME" from the host -> "IP\tNAME\n" appended to OUT (cap bytes). Only
 * address and host-name characters: nothing can add a line or an option. */
static int add_host_line(const uint8_t *d, uint32_t len, char *out, size_t cap) {
  char f[80];
  if (field_str(d, len, f, sizeof f)) return -1;
  char *sp = strchr(f, ' ');
  if (!sp || sp == f || !sp[1]) return -1;
  *sp = 0;
  for (const char *c = f; *c; c++)
    if (!strchr("0123456789abcdefABCDEF.:", *c)) return -1;
  for (const char *c = sp + 1; *c; c++)
    if (!name_char(*c)) return -1;
  size_t used = strlen(out), need = strlen(f) + strlen(sp + 1) + 2;
  if (used + need >= cap) return -1;
  snprintf(out + used, cap - used, "%s\t%s\n", f, sp + 1);
  return 0;
}

int parse_readdress(const uint8_t *p, size_t n, struct readdress_req *r) {
  struct tlv_in it = {p, n};
  uint8_t tag;
  const uint8_t *d;
  uint32_t len;
  int k;
  r->name[0] = 0;
  r->hosts[0] = 0;
  r->why = "malformed readdress";
  if (parse_configure(p, n, &r->net) < 0) return -1;
  while ((k = tlv_next(&it, &tag, &d, &len)) == 1) {
    if (tag == T_NAME && (field_str(d, len, r->name, sizeof r->name) || !valid_name(r->name))) { r->why = "bad root name"; return -1; }
    if (tag == T_EXTRA_HOST && add_host_line(d, len, r->hosts, sizeof r->hosts) < 0) { r->why = "bad extra host"; return -1; }
  }
  if (k < 0) return -1;
  if (!*r->name || !*r->net.ipv4) { r->why = "readdress needs a root name and an address"; return -1; }
  return 0;
}

int path_depth(const char *path) {
  int d = 0;
  for (const char *c = path; *c; c++)
    if (*c != '/' && (c == path || c[-1] == '/')) d++;
  return d;
}

/* "SUB\tDEST" or "SUB\tDEST\tro" (or "\trw") -> a bind. 0 or -1. */
static int parse_bind(const uint8_t *d, uint32_t len, struct mount_bind *b) {
  char f[sizeof b->sub + sizeof b->dest + 8];
  if (field_str(d, len, f, sizeof f)) return -1;
  char *t1 = strchr(f, '\t');
  if (!t1) return -1;
  *t1 = 0;
  char *dest = t1 + 1, *t2 = strchr(dest, '\t');
  b->ro = 0;
  if (t2) {
    *t2 = 0;
    if (!strcmp(t2 + 1, "ro")) b->ro = 1;
    else if (strcmp(t2 + 1, "rw")) return -1;
  }
  if (!valid_name(f) || strlen(f) >= sizeof b->sub) return -1;
  if (dest[0] != '/' || strlen(dest) >= sizeof b->dest || strstr(dest, "/..") || strchr(dest, '\n')) return -1;
  b->depth = path_depth(dest);
  if (b->depth == 0) return -1; /* "/": over the root itself */
  snprintf(b->sub, sizeof b->sub, "%s", f);
  snprintf(b->dest, sizeof b->dest, "%s", dest);
  return 0;
}

/* A virtio-blk serial: a name of at most 20 bytes (VIRTIO_BLK_ID_BYTES). */
static int valid_serial(const char *s) { return valid_name(s) && strlen(s) <= 20; }

int parse_mount_root(const uint8_t *p, size_t n, struct mount_req *m) {
  struct tlv_in it = {p, n};
  uint8_t tag;
  const uint8_t *d;
  uint32_t len;
  memset(m, 0, offsetof(struct mount_req, hosts));
  m->hosts[0] = 0;
  m->why = "bad tag, name or subdir";
  while (tlv_next(&it, &tag, &d, &len) == 1) {
    if (tag == T_TMPFS) continue; /* after the root is mounted: next_tmpfs */
    if (tag == T_ISOLATE && len == 4) m->isolate = be32(d) != 0;
    if (tag == T_READONLY && len == 4) m->readonly = be32(d) != 0;
    if (tag == T_DISCARD_ON_EXIT && len == 4) m->discard_on_exit = be32(d) != 0;
    if (tag == T_PREMOUNT && len == 4) m->premount = be32(d) != 0;
    if (tag == T_PREMOUNTED && len == 4) m->premounted = be32(d) != 0;
    if (tag == T_TAG) (void)field_str(d, len, m->tag, sizeof m->tag);   /* too long: stays invalid */
    if (tag == T_NAME) (void)field_str(d, len, m->name, sizeof m->name);
    if (tag == T_SUBDIR) (void)field_str(d, len, m->sub, sizeof m->sub);
    if (tag == T_BLOCK_LOWER && field_str(d, len, m->lower, sizeof m->lower)) { m->why = "bad block serial"; return -1; }
    if (tag == T_BLOCK_UPPER && field_str(d, len, m->upper, sizeof m->upper)) { m->why = "bad block serial"; return -1; }
    if (tag == T_EXTRA_HOST && add_host_line(d, len, m->hosts, sizeof m->hosts) < 0) { m->why = "bad extra host"; return -1; }
    if (tag == T_BIND) {
      if (m->nbinds >= MOUNT_MAX_BINDS) { m->why = "too many binds"; return -1; }
      if (parse_bind(d, len, &m->binds[m->nbinds]) < 0) { m->why = "bad bind"; return -1; }
      m->nbinds++;
    }
  }
  if (m->premount) {
    /* a template's upper, mounted ahead: the serial alone */
    if (*m->lower || !valid_serial(m->upper) || m->nbinds || *m->sub || *m->tag || m->premounted) {
      m->why = "premount takes an upper serial alone";
      return -1;
    }
    m->why = NULL;
    return 0;
  }
  int block = *m->lower || *m->upper;
  if (m->premounted && !block) { m->why = "premounted without a block root"; return -1; }
  if (block && (!valid_serial(m->lower) || !valid_serial(m->upper) || !strcmp(m->lower, m->upper))) {
    m->why = "bad block serials (both lower and upper, distinct, names of at most 20 bytes)";
    return -1;
  }
  if (block && *m->sub) { m->why = "subdir with a block root"; return -1; }
  /* binds come from the share mounted at /run/share-TAG: a pod's or a block root's */
  if (m->nbinds && !block && !*m->sub) { m->why = "bind without a subdir or a block root"; return -1; }
  /* TAG: the root's share (9p roots), or the share binds come from */
  if ((!block || *m->tag || m->nbinds) && !valid_name(m->tag)) return -1;
  if (!valid_name(m->name) || (*m->sub && !valid_name(m->sub))) return -1;
  /* parents before children: a stable insertion sort by depth (64 at most) */
  for (int i = 1; i < m->nbinds; i++) {
    struct mount_bind b = m->binds[i];
    int j = i;
    for (; j > 0 && m->binds[j - 1].depth > b.depth; j--) m->binds[j] = m->binds[j - 1];
    m->binds[j] = b;
  }
  m->why = NULL;
  return 0;
}

int next_tmpfs(struct tlv_in *it, char *spec, size_t cap) {
  uint8_t tag;
  const uint8_t *d;
  uint32_t len;
  while (tlv_next(it, &tag, &d, &len) == 1) {
    if (tag != T_TMPFS) continue;
    return field_str(d, len, spec, cap) ? -1 : 1;
  }
  return 0;
}

int parse_tmpfs_spec(const char *spec, struct tmpfs_spec *t, char *msg, size_t cap) {
  const char *colon = strchr(spec, ':');
  size_t plen = colon ? (size_t)(colon - spec) : strlen(spec);
  t->flags = MS_NOSUID | MS_NODEV | MS_NOEXEC;
  t->data[0] = 0;
  if (plen == 0 || plen >= sizeof t->path || spec[0] != '/' || strstr(spec, "/..")) {
    snprintf(msg, cap, "tmpfs: bad path");
    return EINVAL;
  }
  memcpy(t->path, spec, plen);
  t->path[plen] = 0;
  if (!colon) return 0;
  char opts[256], *save = NULL;
  snprintf(opts, sizeof opts, "%s", colon + 1);
  for (char *o = strtok_r(opts, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
    if (!strcmp(o, "ro")) t->flags |= MS_RDONLY;
    else if (!strcmp(o, "rw")) t->flags &= ~(unsigned long)MS_RDONLY;
    else if (!strcmp(o, "exec")) t->flags &= ~(unsigned long)MS_NOEXEC;
    else if (!strcmp(o, "noexec")) t->flags |= MS_NOEXEC;
    else if (!strcmp(o, "suid")) t->flags &= ~(unsigned long)MS_NOSUID;
    else if (!strcmp(o, "nosuid")) t->flags |= MS_NOSUID;
    else if (!strcmp(o, "dev")) t->flags &= ~(unsigned long)MS_NODEV;
    else if (!strcmp(o, "nodev")) t->flags |= MS_NODEV;
    else if (!strncmp(o, "size=", 5) || !strncmp(o, "mode=", 5) || !strncmp(o, "uid=", 4) ||
             !strncmp(o, "gid=", 4) || !strncmp(o, "nr_inodes=", 10)) {
      size_t have = strlen(t->data), add = strlen(o);
      if (have + add + 2 < sizeof t->data) { /* an option that does not fit is dropped */
        if (have) t->data[have++] = ',';
        memcpy(t->data + have, o, add + 1);
      }
    }
    /* anything else is ignored, as Docker's parser ignores what the kernel would */
  }
  return 0;
}

/* ---- start -------------------------------------------------------------------------- */

static char *store(struct start_req *r, const uint8_t *d, uint32_t n) {
  if (memchr(d, 0, n) || r->used + n + 1 > sizeof r->strings) return NULL;
  char *s = r->strings + r->used;
  memcpy(s, d, n);
  s[n] = 0;
  r->used += n + 1;
  return s;
}

int parse_start(const uint8_t *p, size_t n, struct start_req *r) {
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
      if (r->argc >= START_MAX_ARGS || !(r->argv[r->argc++] = store(r, d, len))) return -1;
      break;
    case T_ENV:
      if (r->envc >= START_MAX_ENV || !(r->envp[r->envc++] = store(r, d, len))) return -1;
      break;
    case T_TTY: r->tty = len == 4 && be32(d); break;
    case T_STDIN: r->want_stdin = len == 4 && be32(d); break;
    case T_CAP_ADD:
      if (r->ncap_add >= START_MAX_CAPS || !(r->cap_add[r->ncap_add++] = store(r, d, len))) return -1;
      break;
    case T_GROUP_ADD:
      if (r->ngroup_add >= START_MAX_GROUPS || !(r->group_add[r->ngroup_add++] = store(r, d, len))) return -1;
      break;
    case T_CAP_DROP:
      if (r->ncap_drop >= START_MAX_CAPS || !(r->cap_drop[r->ncap_drop++] = store(r, d, len))) return -1;
      break;
    case T_PRIVILEGED: r->privileged = len == 4 && be32(d); break;
    case T_INIT: r->init = len == 4 && be32(d); break;
    case T_EXEC: r->exec = len == 4 && be32(d); break;
    case T_TOOL: if (len != 4 || be32(d) > TOOL_OPAQUE) return -1; r->tool = (int)be32(d); break;
    case T_ROWS: if (len == 4) r->rows = be32(d) & 0xffff; break;
    case T_COLS: if (len == 4) r->cols = be32(d) & 0xffff; break;
    case T_SYSCTL:
      if (r->nsysctl >= START_MAX_PATHS || !(r->sysctl[r->nsysctl++] = store(r, d, len))) return -1;
      break;
    case T_MASK_PATH:
      if (r->nmask >= START_MAX_PATHS || !(r->mask[r->nmask] = store(r, d, len)) || r->mask[r->nmask++][0] != '/') return -1;
      break;
    case T_RO_PATH:
      if (r->nropath >= START_MAX_PATHS || !(r->ropath[r->nropath] = store(r, d, len)) || r->ropath[r->nropath++][0] != '/') return -1;
      break;
    case T_SECCOMP:
      if (len == 0 || len % 8 || len / 8 > SECCOMP_MAX_INSNS) return -1;
      r->seccomp = d;
      r->seccomp_len = len;
      break;
    case T_NO_NEW_PRIVS: r->no_new_privs = len == 4 && be32(d); break;
    case T_ACKED: r->acked = len == 4 && be32(d); break;
    default: break; /* a tag this agent does not know */
    }
  }
  if (rc < 0 || r->argc == 0 || !valid_name(r->name) || r->cwd[0] != '/') return -1;
  /* a tool runs beside the container's processes, never among them */
  if (r->tool && (r->exec || r->init || r->tty)) return -1;
  r->argv[r->argc] = NULL;
  r->envp[r->envc] = NULL;
  return 0;
}

/* ---- capabilities -------------------------------------------------------------------- */

static const char *const cap_names[CAP_LAST + 1] = {
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
};

/* NAME upper-cased, without a "CAP_" prefix, into OUT; 0, or -1 if too long. */
static int cap_key(const char *name, char *out, size_t cap) {
  size_t n = strlen(name);
  if (n >= cap) return -1;
  for (size_t i = 0; i <= n; i++) out[i] = name[i] >= 'a' && name[i] <= 'z' ? (char)(name[i] - 32) : name[i];
  if (strncmp(out, "CAP_", 4) == 0) memmove(out, out + 4, n - 3);
  return 0;
}

int cap_number(const char *name) {
  char key[40];
  if (cap_key(name, key, sizeof key) < 0) return -1;
  /* Docker: "ALL" only without the prefix ("CAP_ALL" is unknown) */
  if (strcmp(key, "ALL") == 0) return strlen(name) == 3 ? -2 : -1;
  for (int i = 0; i <= CAP_LAST; i++)
    if (strcmp(key, cap_names[i]) == 0) return i;
  return -1;
}

/* Bits of NAMES (with "ALL" noted in *ALL), or -1 with MSG set. */
static int cap_bits(char *const *names, int n, uint64_t *bits, int *all, char *msg, size_t cap) {
  *bits = 0;
  *all = 0;
  for (int i = 0; i < n; i++) {
    int c = cap_number(names[i]);
    if (c == -2) { *all = 1; continue; }
    if (c < 0) {
      char key[40];
      if (cap_key(names[i], key, sizeof key) < 0) snprintf(key, sizeof key, "%.32s...", names[i]);
      snprintf(msg, cap, "unknown capability: \"CAP_%s\"", key);
      return -1;
    }
    *bits |= 1ull << c;
  }
  return 0;
}

int start_caps(const struct start_req *r, uint64_t *mask, char *msg, size_t cap) {
  const uint64_t every = (1ull << (CAP_LAST + 1)) - 1;
  uint64_t add, drop;
  int add_all, drop_all;
  /* Docker validates the names even of a privileged container */
  if (cap_bits(r->cap_add, r->ncap_add, &add, &add_all, msg, cap) < 0 ||
      cap_bits(r->cap_drop, r->ncap_drop, &drop, &drop_all, msg, cap) < 0)
    return EINVAL;
  if (r->privileged) *mask = every;
  else if (add_all) *mask = every & ~drop;
  else if (drop_all) *mask = add;
  else *mask = (CAPS_DOCKER_DEFAULT & ~drop) | add;
  return 0;
}

const char *env_path(const struct start_req *r) {
  for (int i = 0; i < r->envc; i++)
    if (strncmp(r->envp[i], "PATH=", 5) == 0) return r->envp[i] + 5;
  return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
}

/* ---- signal, resize ---------------------------------------------------------------- */

int next_signal(struct tlv_in *it) {
  uint8_t tag;
  const uint8_t *d;
  uint32_t len;
  while (tlv_next(it, &tag, &d, &len) == 1)
    if (tag == T_SIGNAL && len == 4 && be32(d) >= 1 && be32(d) <= 64) return (int)be32(d);
  return 0;
}

void parse_resize(const uint8_t *p, size_t n, unsigned short *rows, unsigned short *cols) {
  struct tlv_in it = {p, n};
  uint8_t tag;
  const uint8_t *d;
  uint32_t len;
  *rows = *cols = 0;
  while (tlv_next(&it, &tag, &d, &len) == 1) {
    if (tag == T_ROWS && len == 4) *rows = (unsigned short)be32(d);
    if (tag == T_COLS && len == 4) *cols = (unsigned short)be32(d);
  }
}
