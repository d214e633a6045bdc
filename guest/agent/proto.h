/* hyperbox agent protocol, version 1. See ../PROTOCOL.md.
 * A frame is a 12-byte header followed by at most HB_MAX_PAYLOAD bytes:
 *   u32 payload length (big endian) | u8 type | u8 version | u16 reserved | u32 process id
 * Control payloads are TLV lists: u8 tag | u32 length (big endian) | bytes. */
#ifndef HB_PROTO_H
#define HB_PROTO_H
#include <stddef.h>
#include <stdint.h>

#define HB_PROTO_VERSION 1
#define HB_HEADER_SIZE 12
#define HB_MAX_PAYLOAD 65536

enum hb_type {
  /* guest -> host */
  HB_HELLO = 0x01,        /* TLV: T_VERSION, T_MESSAGE (agent build id) */
  HB_RESULT = 0x02,       /* TLV: T_ERRNO (0 = ok), T_MESSAGE; answers a request on proc 0 */
  HB_STARTED = 0x30,      /* TLV: T_PID */
  HB_START_FAILED = 0x31, /* TLV: T_ERRNO, T_MESSAGE */
  HB_STDOUT = 0x32,       /* raw bytes */
  HB_STDERR = 0x33,       /* raw bytes */
  HB_EXIT = 0x34,         /* TLV: T_STATUS, T_SIGNAL, T_OOM (1 if the memory cgroup OOM-killed during its life) */
  HB_STDIN_WINDOW = 0x35, /* TLV: T_COUNT bytes the process consumed */
  HB_PONG = 0x36,
  HB_RESENT = 0x37,       /* TLV: T_OFFSET the resend starts at, or T_ERRNO (no such process, or one that keeps nothing) */
  /* host -> guest */
  HB_CONFIGURE = 0x20,    /* TLV: T_HOSTNAME, T_TIME, T_SEED, T_IPV4 (addr/prefix), T_GATEWAY, T_DNS, T_MEMLIMIT (u64 bytes) */
  HB_MOUNT_ROOT = 0x21,   /* TLV: T_TAG (9p mount tag), T_NAME (container root name), T_SUBDIR (optional), T_TMPFS* ("/path[:opts]"), T_EXTRA_HOST* ("IP NAME"),
                           * T_ISOLATE, T_BLOCK_LOWER + T_BLOCK_UPPER (virtio-blk serials: an overlay root), T_BIND* ("SUB\tDEST[\tro]"), T_READONLY */
  HB_PING = 0x22,
  HB_POWEROFF = 0x23,
  HB_STATS = 0x24,        /* answered by HB_RESULT with T_MEMINFO, T_CPUSTAT, T_UPTIME, T_PROCESS* */
  HB_LIMITS = 0x25,       /* TLV: T_NAME, T_MEMLIMIT, T_CPU_MAX, T_CPU_WEIGHT, T_PIDS_MAX: the root's own cgroup; HB_RESULT */
  HB_READDRESS = 0x26,    /* TLV: T_NAME, T_IPV4, T_GATEWAY, T_DNS, T_MAC, T_EXTRA_HOST*: eth0 renumbered (a migrated VM), root NAME's /etc files follow; HB_RESULT */
  HB_START = 0x10,        /* TLV: T_NAME, T_ARG*, T_ENV*, T_CWD, T_USER, T_TTY, T_ROWS, T_COLS, T_STDIN,
                           * T_CAP_ADD*, T_CAP_DROP*, T_PRIVILEGED, T_INIT, T_EXEC, T_TOOL,
                           * T_GROUP_ADD*, T_SYSCTL*, T_MASK_PATH*, T_RO_PATH*, T_SECCOMP, T_NO_NEW_PRIVS */
  HB_STDIN = 0x11,        /* raw bytes */
  HB_STDIN_EOF = 0x12,
  HB_SIGNAL = 0x13,       /* TLV: T_SIGNAL */
  HB_RESIZE = 0x14,       /* TLV: T_ROWS, T_COLS */
  HB_ACK = 0x15,          /* TLV: T_OFFSET: output up to there is the host's (a T_ACKED process) */
  HB_RESEND = 0x16,       /* TLV: T_OFFSET the host has: answered by HB_RESENT, then what is kept past it */
};

enum hb_tag {
  T_VERSION = 1, T_MESSAGE = 2, T_ERRNO = 3, T_PID = 4, T_STATUS = 5, T_SIGNAL = 6,
  T_COUNT = 7, T_HOSTNAME = 8, T_TIME = 9, T_SEED = 10, T_TAG = 11, T_NAME = 12,
  T_ARG = 13, T_ENV = 14, T_CWD = 15, T_USER = 16, T_TTY = 17, T_ROWS = 18,
  T_COLS = 19, T_STDIN = 20, T_SUBDIR = 21, T_MEMINFO = 22, T_CPUSTAT = 23, T_UPTIME = 24,
  T_PROCESS = 25, T_IPV4 = 26, T_GATEWAY = 27, T_DNS = 28, T_TMPFS = 29, T_MEMLIMIT = 30, T_OOM = 31,
  T_MAC = 32, T_ISOLATE = 33, T_EXTRA_HOST = 34, T_CAP_ADD = 35, T_CAP_DROP = 36, T_PRIVILEGED = 37,
  T_INIT = 38, T_EXEC = 39, T_BLOCK_LOWER = 40, T_BLOCK_UPPER = 41, T_BIND = 42, T_READONLY = 43,
  T_TOOL = 44,
  T_CPU_MAX = 45, T_CPU_WEIGHT = 46, T_PIDS_MAX = 47, /* HB_LIMITS */
  T_SYSCTL = 48, T_MASK_PATH = 49, T_RO_PATH = 50, T_SECCOMP = 51, T_NO_NEW_PRIVS = 52, /* HB_START */
  T_DISCARD_ON_EXIT = 53, /* HB_MOUNT_ROOT: a block root's disk is deleted after its main process exits (no sync then) */
  T_PREMOUNT = 54,   /* HB_MOUNT_ROOT with T_BLOCK_UPPER alone (a template): mount that disk's ext4 ahead, no root */
  T_PREMOUNTED = 55, /* HB_MOUNT_ROOT of a block root: its upper disk may be the one mounted ahead (T_PREMOUNT) */
  T_GROUP_ADD = 60, /* HB_START: an extra group of the process (name in the root's /etc/group, or a number) */
  T_ACKED = 61,     /* HB_START, HB_STARTED: the process's output is kept until acknowledged (HB_ACK) */
  T_OFFSET = 62,    /* u64 position in a process's output (HB_ACK, HB_RESEND, HB_RESENT) */
};

/* Builder for an outgoing TLV payload. Silently refuses to grow past the limit;
 * callers only put bounded data in it. */
struct tlv_out { uint8_t buf[HB_MAX_PAYLOAD]; size_t len; };
void tlv_reset(struct tlv_out *t);
void tlv_put(struct tlv_out *t, uint8_t tag, const void *data, uint32_t len);
void tlv_put_u32(struct tlv_out *t, uint8_t tag, uint32_t v);
void tlv_put_str(struct tlv_out *t, uint8_t tag, const char *s);

/* Iterator over a received TLV payload. Returns 1 and fills tag/data/len for the
 * next field, 0 at the end, -1 if the payload is malformed. */
struct tlv_in { const uint8_t *p; size_t left; };
int tlv_next(struct tlv_in *it, uint8_t *tag, const uint8_t **data, uint32_t *len);
uint32_t be32(const uint8_t *p);
uint64_t be64(const uint8_t *p);

/* Splits the complete frames at the front of BUF (LEN bytes received) and calls
 * FN for each, in order. Sets *USED to the bytes consumed (a partial frame stays
 * for later). Returns 0, or -1 on a header with a payload over HB_MAX_PAYLOAD or
 * another version: *USED is then its offset, and the frames before it were
 * delivered. */
typedef void hb_frame_fn(uint8_t type, uint32_t proc, const uint8_t *payload, size_t len, void *ctx);
int hb_split_frames(const uint8_t *buf, size_t len, size_t *used, hb_frame_fn *fn, void *ctx);

/* Frame I/O on the control channel (blocking writes, whole frames). Writes
 * return -1 when the host is gone; the callers ignore that on purpose: the
 * agent keeps serving, and the host closes or stops the VM. */
void hb_set_channel(int fd);
int hb_send(uint8_t type, uint32_t proc, const void *payload, size_t len);
int hb_send_tlv(uint8_t type, uint32_t proc, const struct tlv_out *t);
#endif
