/* Output kept until the host acknowledges it: see keep.c. */
#ifndef HB_KEEP_H
#define HB_KEEP_H
#include <stddef.h>
#include <stdint.h>

#ifndef KEEP_MAX /* the fuzzer makes it small, to reach the bound and the compaction */
#define KEEP_MAX (512 * 1024) /* bytes kept per process (records and their headers); the process then waits */
#endif
/* Largest record, and largest read of a process's output: a frame of it with its
 * header is one 32 KiB virtio-serial write (a longer one is split, and a host that
 * dies between the parts leaves the next one half a frame). */
#define KEEP_RECORD (32768 - 12)

struct keep {
  uint8_t *buf;  /* 2 * KEEP_MAX bytes */
  size_t head;   /* offset of the first record */
  size_t len;    /* offset past the last record */
  size_t last;   /* offset of the last record (if any) */
  uint64_t base; /* position of the first kept byte: everything before it is acknowledged */
  uint64_t end;  /* position after the last byte kept */
};
int keep_init(struct keep *k); /* 0, or -1 (no memory) */
void keep_free(struct keep *k);
size_t keep_room(const struct keep *k); /* output bytes that can be kept now */
void keep_append(struct keep *k, uint8_t type, const uint8_t *p, size_t n);
void keep_ack(struct keep *k, uint64_t pos); /* drops what is before POS (at most END) */
typedef void keep_fn(uint8_t type, const uint8_t *p, size_t n, void *ctx);
void keep_each(const struct keep *k, keep_fn *fn, void *ctx); /* every kept record, in order */
#endif
