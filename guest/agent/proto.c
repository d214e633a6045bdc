#include "proto.h"
#include <errno.h>
#include <string.h>
#include <unistd.h>

static int channel_fd = -1;

void hb_set_channel(int fd) { channel_fd = fd; }

uint32_t be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
uint64_t be64(const uint8_t *p) { return ((uint64_t)be32(p) << 32) | be32(p + 4); }
static void put32(uint8_t *p, uint32_t v) {
  p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}

void tlv_reset(struct tlv_out *t) { t->len = 0; }

void tlv_put(struct tlv_out *t, uint8_t tag, const void *data, uint32_t len) {
  if (t->len + 5 + (size_t)len > sizeof t->buf) return;
  t->buf[t->len] = tag;
  put32(t->buf + t->len + 1, len);
  memcpy(t->buf + t->len + 5, data, len);
  t->len += 5 + len;
}
void tlv_put_u32(struct tlv_out *t, uint8_t tag, uint32_t v) {
  uint8_t b[4]; put32(b, v); tlv_put(t, tag, b, 4);
}
void tlv_put_str(struct tlv_out *t, uint8_t tag, const char *s) {
  size_t n = strlen(s);
  if (n > 4096) n = 4096;
  tlv_put(t, tag, s, (uint32_t)n);
}

int tlv_next(struct tlv_in *it, uint8_t *tag, const uint8_t **data, uint32_t *len) {
  if (it->left == 0) return 0;
  if (it->left < 5) return -1;
  uint32_t n = be32(it->p + 1);
  if (n > it->left - 5) return -1;
  *tag = it->p[0]; *data = it->p + 5; *len = n;
  it->p += 5 + n; it->left -= 5 + n;
  return 1;
}

int hb_split_frames(const uint8_t *buf, size_t len, size_t *used, hb_frame_fn *fn, void *ctx) {
  size_t off = 0;
  while (len - off >= HB_HEADER_SIZE) {
    uint32_t n = be32(buf + off);
    if (n > HB_MAX_PAYLOAD || buf[off + 5] != HB_PROTO_VERSION) { *used = off; return -1; }
    if (len - off - HB_HEADER_SIZE < n) break;
    fn(buf[off + 4], be32(buf + off + 8), buf + off + HB_HEADER_SIZE, n, ctx);
    off += HB_HEADER_SIZE + n;
  }
  *used = off;
  return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) { if (errno == EINTR) continue; return -1; }
    p += w; n -= (size_t)w;
  }
  return 0;
}

int hb_send(uint8_t type, uint32_t proc, const void *payload, size_t len) {
  static uint8_t frame[HB_HEADER_SIZE + HB_MAX_PAYLOAD];
  if (len > HB_MAX_PAYLOAD) return -1;
  put32(frame, (uint32_t)len);
  frame[4] = type; frame[5] = HB_PROTO_VERSION; frame[6] = 0; frame[7] = 0;
  put32(frame + 8, proc);
  if (len) memcpy(frame + HB_HEADER_SIZE, payload, len);
  return write_all(channel_fd, frame, HB_HEADER_SIZE + len);
}

int hb_send_tlv(uint8_t type, uint32_t proc, const struct tlv_out *t) {
  return hb_send(type, proc, t->buf, t->len);
}
