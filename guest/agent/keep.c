/* Output kept until the host acknowledges it (START with T_ACKED; PROTOCOL.md,
 * "Output kept until acknowledged"). Pure bookkeeping over one buffer, no I/O:
 * fuzzed with the parsers (guest/fuzz).
 *
 * The buffer holds records in the order they were read from the process:
 *   u8 type (HB_STDOUT or HB_STDERR) | u32 length (host order) | bytes
 * from HEAD to LEN. Positions count output bytes of both streams together since
 * the start; the first kept byte is at BASE, the next byte read will be at END.
 * An acknowledgement only moves HEAD; the records are moved to the front when
 * one no longer fits behind them. The buffer is twice the bound, so that happens
 * at most once per KEEP_MAX bytes appended: no byte is moved more than once on
 * average, however often the host acknowledges. */
#include "keep.h"
#include <stdlib.h>
#include <string.h>

#define REC_HDR 5
#define KEEP_CAP (2 * KEEP_MAX)

static uint32_t rec_len(const uint8_t *p) { uint32_t n; memcpy(&n, p + 1, 4); return n; }
static void set_rec_len(uint8_t *p, uint32_t n) { memcpy(p + 1, &n, 4); }

int keep_init(struct keep *k) {
  memset(k, 0, sizeof *k);
  k->buf = malloc(KEEP_CAP); /* pages are touched only as output is kept */
  return k->buf ? 0 : -1;
}

void keep_free(struct keep *k) {
  free(k->buf);
  memset(k, 0, sizeof *k);
}

size_t keep_room(const struct keep *k) {
  size_t free_bytes = KEEP_MAX - (k->len - k->head);
  return free_bytes > REC_HDR ? free_bytes - REC_HDR : 0;
}

void keep_append(struct keep *k, uint8_t type, const uint8_t *p, size_t n) {
  if (n > keep_room(k)) n = keep_room(k); /* callers read at most keep_room() */
  if (!n) return;
  if (k->len + REC_HDR + n > KEEP_CAP) {
    memmove(k->buf, k->buf + k->head, k->len - k->head);
    k->len -= k->head;
    k->last = k->last >= k->head ? k->last - k->head : 0;
    k->head = 0;
  }
  /* Runs of one stream share a record (up to KEEP_RECORD, so a resend fits a frame). */
  if (k->len > k->head && k->buf[k->last] == type && rec_len(k->buf + k->last) + n <= KEEP_RECORD) {
    set_rec_len(k->buf + k->last, rec_len(k->buf + k->last) + (uint32_t)n);
    memcpy(k->buf + k->len, p, n);
    k->len += n;
  } else {
    k->last = k->len;
    k->buf[k->len] = type;
    set_rec_len(k->buf + k->len, (uint32_t)n);
    memcpy(k->buf + k->len + REC_HDR, p, n);
    k->len += REC_HDR + n;
  }
  k->end += n;
}

void keep_ack(struct keep *k, uint64_t pos) {
  if (pos > k->end) pos = k->end;
  if (pos <= k->base) return;
  uint64_t drop = pos - k->base;
  size_t off = k->head;
  while (off < k->len && drop >= rec_len(k->buf + off)) {
    drop -= rec_len(k->buf + off);
    off += REC_HDR + rec_len(k->buf + off);
  }
  if (off < k->len && drop) {
    /* the acknowledged position falls inside this record: it keeps its tail */
    uint8_t type = k->buf[off];
    uint32_t rest = rec_len(k->buf + off) - (uint32_t)drop;
    int was_last = off == k->last;
    off += (size_t)drop;
    k->buf[off] = type;
    set_rec_len(k->buf + off, rest);
    if (was_last) k->last = off;
  }
  k->head = off;
  if (k->head == k->len) k->head = k->len = k->last = 0; /* empty: start at the front again */
  k->base = pos;
}

void keep_each(const struct keep *k, keep_fn *fn, void *ctx) {
  for (size_t off = k->head; off < k->len; off += REC_HDR + rec_len(k->buf + off))
    fn(k->buf[off], k->buf + off + REC_HDR, rec_len(k->buf + off), ctx);
}
