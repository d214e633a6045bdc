/* Parsers of request payloads (host -> guest). They make no system calls and
 * allocate nothing: every output is a fixed buffer or a pointer into the
 * payload. guest/fuzz/fuzz_proto.c runs them, with proto.c, under libFuzzer. */
#ifndef HB_REQUEST_H
#define HB_REQUEST_H
#include "proto.h"
#include <netinet/in.h>
#include <sys/types.h>

/* Copies a TLV string field into a NUL-terminated buffer; refuses embedded NULs
 * and strings that do not fit. 0 or -1 (out is then untouched). */
int field_str(const uint8_t *d, uint32_t n, char *out, size_t cap);
/* Container root names, 9p tags and subdirs become paths: a safe alphabet,
 * 1..64 characters, no leading dot. */
int valid_name(const char *s);

/* HB_CONFIGURE. Later fields of one kind replace earlier ones. */
struct configure_req {
  const uint8_t *hostname; uint32_t hostname_len; int have_hostname; /* <= 64 bytes */
  uint64_t time_ns; int have_time;
  const uint8_t *seed; uint32_t seed_len; int have_seed;             /* <= 512 bytes */
  uint64_t memlimit; int have_memlimit;
  char ipv4[32], gw[32], dns[64]; int have_dns;
  uint8_t mac[6]; int have_mac; /* a unicast MAC only */
};
/* 0, or -1 if the payload is malformed; the fields before the fault are kept. */
int parse_configure(const uint8_t *p, size_t n, struct configure_req *c);
/* HB_READDRESS: the network fields of CONFIGURE, the root NAME and its
 * T_EXTRA_HOST lines. -1 (with WHY set) if malformed, a name or an extra host
 * is not valid, or NAME or IPV4 is missing. */
struct readdress_req {
  struct configure_req net; /* T_IPV4, T_GATEWAY, T_DNS, T_MAC used */
  char name[80];
  char hosts[32 * 80];
  const char *why;
};
int parse_readdress(const uint8_t *p, size_t n, struct readdress_req *r);
/* "a.b.c.d[/prefix]" (prefix 24 if absent) -> address and netmask. 0 or EINVAL. */
int parse_ipv4_cidr(const char *cidr, struct in_addr *addr, struct in_addr *mask);

/* HB_MOUNT_ROOT, without its T_TMPFS fields (next_tmpfs walks those). A
 * malformed tail ends the walk, as it always has. -1 (with WHY set) if a name,
 * serial, bind or extra host is not valid or the combination is not. */
#define MOUNT_MAX_BINDS 64
struct mount_bind {
  char sub[80];   /* a name under the share (valid_name: no '/', no leading dot) */
  char dest[512]; /* absolute, no "/.." in it, not "/" */
  int ro;
  int depth;      /* components of DEST */
};
struct mount_req {
  char tag[64], name[80], sub[80];
  int isolate;
  int readonly;   /* T_READONLY: the root remounted read-only once prepared */
  int discard_on_exit; /* T_DISCARD_ON_EXIT: a block root's disk is not synced when its main process exits */
  int premount;   /* T_PREMOUNT: only mount the upper disk ahead (a template), no root */
  int premounted; /* T_PREMOUNTED: the upper may be the disk mounted ahead */
  /* T_BLOCK_LOWER / T_BLOCK_UPPER: virtio-blk serials ("" if absent) */
  char lower[64], upper[64];
  /* T_BIND fields, sorted by depth of DEST (parents first; stable) */
  struct mount_bind binds[MOUNT_MAX_BINDS];
  int nbinds;
  const char *why; /* a static message when parse_mount_root returns -1 */
  /* T_EXTRA_HOST lines for /etc/hosts, "IP\tNAME\n" each (at most 32, checked) */
  char hosts[32 * 80];
};
/* The number of non-empty components of PATH ("/a//b/" is 2, "/" is 0). */
int path_depth(const char *path);
int parse_mount_root(const uint8_t *p, size_t n, struct mount_req *m);
/* The next T_TMPFS field as a string: 1, 0 at the end (or a malformed tail),
 * -1 if the field does not fit SPEC or holds a NUL. */
int next_tmpfs(struct tlv_in *it, char *spec, size_t cap);
/* A "/path[:opts]" spec (Docker's --tmpfs syntax) -> mount flags and data.
 * 0, or EINVAL with MSG set. */
struct tmpfs_spec { char path[512], data[256]; unsigned long flags; };
int parse_tmpfs_spec(const char *spec, struct tmpfs_spec *t, char *msg, size_t cap);

/* HB_START. */
#define START_MAX_ARGS 256
#define START_MAX_ENV 512
#define START_MAX_CAPS 64 /* of each of T_CAP_ADD and T_CAP_DROP */
#define START_MAX_PATHS 64 /* of each of T_SYSCTL, T_MASK_PATH and T_RO_PATH */
#define SECCOMP_MAX_INSNS 4096 /* the kernel's BPF_MAXINSNS */
#define START_MAX_GROUPS 64 /* T_GROUP_ADD fields; the process gets these, its own and /etc/group's */
struct start_req {
  char name[80], cwd[1024], user[256];
  char *argv[START_MAX_ARGS + 1], *envp[START_MAX_ENV + 1]; /* room for the NULLs */
  int argc, envc, tty, want_stdin;
  unsigned rows, cols;
  char *cap_add[START_MAX_CAPS], *cap_drop[START_MAX_CAPS]; /* names as the host sent them */
  int ncap_add, ncap_drop;
  char *group_add[START_MAX_GROUPS];
  int ngroup_add;
  gid_t groups[2 * START_MAX_GROUPS + 1]; /* resolved by handle_start: the gid, /etc/group's, GROUP_ADD */
  int ngroups;
  int privileged; /* every capability */
  int init;       /* a small init as PID 1 that forwards signals and reaps (docker run --init) */
  int exec;       /* join the PID namespace of the root's main process (docker exec) */
  int tool;       /* T_TOOL: 0, or one of the TOOL_ values below (tool.c) */
  /* A main process's namespaces and mounts (ignored for an exec or a tool):
   * T_SYSCTL "key=value" written under /proc/sys, T_MASK_PATH hidden (an empty
   * read-only tmpfs or /dev/null bound over it), T_RO_PATH bound read-only. */
  char *sysctl[START_MAX_PATHS], *mask[START_MAX_PATHS], *ropath[START_MAX_PATHS];
  int nsysctl, nmask, nropath;
  /* T_SECCOMP: a classic BPF program (struct sock_filter[], little endian),
   * installed just before exec; points into the request's payload. */
  const uint8_t *seccomp;
  uint32_t seccomp_len;
  int no_new_privs; /* T_NO_NEW_PRIVS: PR_SET_NO_NEW_PRIVS before exec */
  int acked;        /* T_ACKED: output kept until the host acknowledges it (keep.c) */
  char strings[HB_MAX_PAYLOAD + 1024]; /* argv/env storage, bounded by the frame */
  size_t used;
};
/* T_TOOL values: run the agent's busybox (not a program of the image) in the
 * root as the container sees it (with its mounts), or in the root's own
 * filesystem only (no /proc, /dev, volumes, binds: `export`). */
#define TOOL_MOUNTS 1
#define TOOL_OWN_FS 2
/* A root on block devices only: the tool runs in the overlay's upper directory
 * (the container's writable layer, with overlay's whiteouts), for `diff` and
 * `commit`. TOOL_OPAQUE runs no program: the agent writes the path of each
 * opaque directory of the upper directory ("./a/b", NUL-terminated). */
#define TOOL_UPPER 3
#define TOOL_OPAQUE 4
/* 0, or -1 if malformed. argv/envp are NULL-terminated on success. */
int parse_start(const uint8_t *p, size_t n, struct start_req *r);
/* The capability set of the request's process (bit N = capability N): Docker's
 * default set, less CAP_DROP, plus CAP_ADD ("ALL" in CAP_ADD: every capability
 * but those dropped; "ALL" in CAP_DROP: only those added), or every capability
 * if PRIVILEGED. Names are Docker's: case-insensitive, with or without "CAP_".
 * 0, or EINVAL with MSG naming the first unknown capability. */
#define CAP_LAST 40 /* CAP_CHECKPOINT_RESTORE, the last one of the guest's kernel (6.1) */
#define CAPS_DOCKER_DEFAULT 0xa80425fbull
int start_caps(const struct start_req *r, uint64_t *mask, char *msg, size_t cap);
/* The number of a capability name ("net_admin", "CAP_NET_ADMIN"), -2 for
 * "ALL", -1 if unknown. */
int cap_number(const char *name);

/* HB_ACK, HB_RESEND: the T_OFFSET field. 0 and *POS set, or -1 (missing, not
 * 8 bytes, or a malformed list). */
int parse_offset(const uint8_t *p, size_t n, uint64_t *pos);

/* The PATH of the request's environment, or the default one. */
const char *env_path(const struct start_req *r);

/* HB_LIMITS: the cgroup limits of root NAME. A field absent is left as it is. */
struct limits_req {
  char name[80];
  uint64_t memory; int have_memory;   /* memory.max in bytes; 0 = max */
  char cpu_max[48]; int have_cpu_max; /* cpu.max as the kernel reads it: "QUOTA|max PERIOD" */
  uint32_t cpu_weight;                /* cpu.weight 1..10000; 0 = absent */
  uint32_t pids; int have_pids;       /* pids.max; 0 = max */
};
/* 0, or -1 if malformed (a bad name, cpu.max not digits/"max" and a period, a weight out of range). */
int parse_limits(const uint8_t *p, size_t n, struct limits_req *l);
/* A sysctl "key=value" -> the path under /proc/sys ("net/ipv4/ip_forward") and
 * the value. Keys are [a-z0-9_.-/]; "." separates components (as runc). 0 or -1. */
int parse_sysctl(const char *kv, char *path, size_t cap, const char **value);

/* HB_SIGNAL: the next valid T_SIGNAL (1..64), or 0 at the end. */
int next_signal(struct tlv_in *it);
/* HB_RESIZE: T_ROWS/T_COLS (0 if absent). */
void parse_resize(const uint8_t *p, size_t n, unsigned short *rows, unsigned short *cols);
#endif
