/* libFuzzer harness for the agent's wire parsers: frame splitting (proto.c)
 * and the TLV payload parsers of every request (request.c), the code that
 * reads bytes the host sends. Build: make -C guest fuzz; run:
 * scripts/fuzz-agent.sh [seconds].
 *
 * The input is a byte stream as the agent reads it from the control channel.
 * Each frame's payload is copied into a buffer of exactly its size, so that
 * AddressSanitizer catches a parser reading one byte past its frame (in the
 * agent the frame sits in a larger static buffer, where it would go unseen).
 * Besides memory errors, the harness checks the parsers' promises and traps
 * when one is broken. It also drives the kept-output buffer (keep.c) as a
 * stream of output (STDOUT, STDERR payloads) and acknowledgements (HB_ACK,
 * HB_RESEND offsets), checked against a plain copy of everything appended. */
#include "keep.h"
#include "proto.h"
#include "request.h"
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

static volatile unsigned sink; /* keeps reads of parsed data from being optimised out */

static void touch(const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++) sink += b[i];
}

static void check_str(const char *s, size_t cap) {
  CHECK(memchr(s, 0, cap) != NULL); /* NUL-terminated within its buffer */
}

/* Generic walk: every field lies inside the payload, and the builder
 * re-encodes it to the same bytes. */
static void walk_tlv(const uint8_t *p, size_t n) {
  static struct tlv_out out;
  struct tlv_in it = {p, n};
  uint8_t tag;
  const uint8_t *d;
  uint32_t len;
  int r;
  size_t seen = 0;
  tlv_reset(&out);
  while ((r = tlv_next(&it, &tag, &d, &len)) == 1) {
    CHECK(d >= p + 5 && d + len <= p + n);
    touch(d, len);
    tlv_put(&out, tag, d, len);
    seen += 5 + (size_t)len;
  }
  CHECK(r == 0 || r == -1);
  CHECK(seen <= n);
  if (r == 0) CHECK(seen == n && out.len == n && memcmp(out.buf, p, n) == 0);
}

static void fuzz_configure(const uint8_t *p, size_t n) {
  struct configure_req c;
  struct in_addr a, m;
  (void)parse_configure(p, n, &c);
  check_str(c.ipv4, sizeof c.ipv4);
  check_str(c.gw, sizeof c.gw);
  check_str(c.dns, sizeof c.dns);
  if (c.have_hostname) { CHECK(c.hostname_len <= 64); touch(c.hostname, c.hostname_len); }
  if (c.have_seed) { CHECK(c.seed_len <= 512); touch(c.seed, c.seed_len); }
  if (c.have_mac) CHECK(!(c.mac[0] & 1));
  if (parse_ipv4_cidr(c.ipv4, &a, &m) == 0) {
    uint32_t mask = ntohl(m.s_addr);
    CHECK((mask & (~mask >> 1)) == 0); /* a contiguous netmask */
  }
}

static void fuzz_readdress(const uint8_t *p, size_t n) {
  struct readdress_req r;
  if (parse_readdress(p, n, &r) < 0) { CHECK(r.why != NULL); return; }
  CHECK(valid_name(r.name) && *r.net.ipv4);
  check_str(r.name, sizeof r.name);
  check_str(r.hosts, sizeof r.hosts);
  check_str(r.net.ipv4, sizeof r.net.ipv4);
}

static void fuzz_mount_root(const uint8_t *p, size_t n) {
  struct mount_req m;
  struct tmpfs_spec t;
  char spec[512], msg[256];
  int r;
  if (parse_mount_root(p, n, &m) == 0 && m.premount) {
    /* a template's upper mounted ahead: the serial alone (NAME is not used) */
    CHECK(m.why == NULL);
    CHECK(!*m.lower && valid_name(m.upper) && strlen(m.upper) <= 20 && !m.nbinds && !*m.sub && !*m.tag && !m.premounted);
  } else if (parse_mount_root(p, n, &m) == 0) {
    int block = *m.lower != 0;
    CHECK(m.why == NULL);
    CHECK(valid_name(m.name) && (block || valid_name(m.tag)));
    CHECK(!strchr(m.name, '/') && m.name[0] != '.');
    if (block) CHECK(valid_name(m.lower) && valid_name(m.upper) && strlen(m.lower) <= 20 && strcmp(m.lower, m.upper) && !*m.sub);
    else CHECK(!*m.upper);
    CHECK(m.nbinds >= 0 && m.nbinds <= MOUNT_MAX_BINDS);
    if (m.nbinds) CHECK(valid_name(m.tag) && (block || *m.sub));
    for (int i = 0; i < m.nbinds; i++) {
      const struct mount_bind *b = &m.binds[i];
      check_str(b->sub, sizeof b->sub);
      check_str(b->dest, sizeof b->dest);
      CHECK(valid_name(b->sub) && b->dest[0] == '/' && !strstr(b->dest, "/..") && b->depth == path_depth(b->dest) && b->depth > 0);
      if (i) CHECK(m.binds[i - 1].depth <= b->depth); /* parents first */
    }
    check_str(m.hosts, sizeof m.hosts);
  } else {
    CHECK(m.why != NULL);
  }
  struct tlv_in it = {p, n};
  while ((r = next_tmpfs(&it, spec, sizeof spec)) != 0) {
    if (r < 0) continue; /* the agent stops here; keep walking to cover more */
    check_str(spec, sizeof spec);
    if (parse_tmpfs_spec(spec, &t, msg, sizeof msg) == 0) {
      check_str(t.path, sizeof t.path);
      check_str(t.data, sizeof t.data);
      CHECK(t.path[0] == '/' && !strstr(t.path, "/.."));
    } else {
      check_str(msg, sizeof msg);
    }
  }
}

static void fuzz_start(const uint8_t *p, size_t n) {
  static struct start_req r;
  if (parse_start(p, n, &r) < 0) return;
  CHECK(r.argc >= 1 && r.argc <= START_MAX_ARGS && r.envc >= 0 && r.envc <= START_MAX_ENV);
  CHECK(r.argv[r.argc] == NULL && r.envp[r.envc] == NULL);
  CHECK(valid_name(r.name) && r.cwd[0] == '/');
  CHECK(r.used <= sizeof r.strings);
  for (int i = 0; i < r.argc; i++) {
    CHECK(r.argv[i] >= r.strings && r.argv[i] < r.strings + r.used);
    touch(r.argv[i], strlen(r.argv[i]));
  }
  for (int i = 0; i < r.envc; i++) {
    CHECK(r.envp[i] >= r.strings && r.envp[i] < r.strings + r.used);
    touch(r.envp[i], strlen(r.envp[i]));
  }
  const char *path = env_path(&r);
  touch(path, strlen(path));
  check_str(r.user, sizeof r.user);
  CHECK(r.rows <= 0xffff && r.cols <= 0xffff);
  CHECK(r.ncap_add <= START_MAX_CAPS && r.ncap_drop <= START_MAX_CAPS);
  char msg[128];
  uint64_t caps = 0;
  if (start_caps(&r, &caps, msg, sizeof msg) == 0) CHECK(caps >> (CAP_LAST + 1) == 0 && (!r.privileged || caps == (1ull << (CAP_LAST + 1)) - 1));
  else check_str(msg, sizeof msg);
  CHECK(r.nsysctl <= START_MAX_PATHS && r.nmask <= START_MAX_PATHS && r.nropath <= START_MAX_PATHS);
  for (int i = 0; i < r.nmask; i++) CHECK(r.mask[i][0] == '/');
  for (int i = 0; i < r.nropath; i++) CHECK(r.ropath[i][0] == '/');
  for (int i = 0; i < r.nsysctl; i++) {
    char key[256];
    const char *value;
    if (parse_sysctl(r.sysctl[i], key, sizeof key, &value) == 0) {
      check_str(key, sizeof key);
      CHECK(key[0] != '/' && !strstr(key, "//") && !strstr(key, ".."));
      touch(value, strlen(value));
    }
  }
  if (r.seccomp) { CHECK(r.seccomp_len % 8 == 0 && r.seccomp_len / 8 <= SECCOMP_MAX_INSNS); touch(r.seccomp, r.seccomp_len); }
}

static void fuzz_limits(const uint8_t *p, size_t n) {
  struct limits_req l;
  if (parse_limits(p, n, &l) < 0) return;
  CHECK(valid_name(l.name));
  check_str(l.cpu_max, sizeof l.cpu_max);
  CHECK(!l.have_cpu_max || strchr(l.cpu_max, ' '));
  CHECK(l.cpu_weight <= 10000);
}

/* The kept-output model of one input: every byte appended, by position. */
static struct keep kept;
static uint8_t shadow[1 << 21];
static uint8_t shadow_type[1 << 21];
struct walk { uint64_t pos; };

static void check_record(uint8_t type, const uint8_t *p, size_t n, void *ctx) {
  struct walk *w = ctx;
  CHECK((type == HB_STDOUT || type == HB_STDERR) && n > 0 && n <= KEEP_RECORD);
  for (size_t i = 0; i < n; i++) CHECK(p[i] == shadow[w->pos + i] && shadow_type[w->pos + i] == type);
  w->pos += n;
}

static void check_keep(void) {
  struct walk w = {kept.base};
  CHECK(kept.base <= kept.end && kept.head <= kept.len && kept.len <= 2 * KEEP_MAX && kept.len - kept.head <= KEEP_MAX);
  keep_each(&kept, check_record, &w);
  CHECK(w.pos == kept.end); /* exactly the bytes not acknowledged, in order */
}

static void fuzz_keep_output(uint8_t type, const uint8_t *p, size_t n) {
  if (!kept.buf) return;
  size_t take = n < keep_room(&kept) ? n : keep_room(&kept);
  if (kept.end + take > sizeof shadow) return;
  memcpy(shadow + kept.end, p, take);
  memset(shadow_type + kept.end, type, take);
  keep_append(&kept, type, p, take);
  check_keep();
}

static void fuzz_offset(const uint8_t *p, size_t n) {
  uint64_t pos = 0;
  if (parse_offset(p, n, &pos) < 0 || !kept.buf) return;
  uint64_t base = kept.base;
  /* as the agent does: a small offset scaled into the kept range, to hit it often */
  keep_ack(&kept, pos < (1u << 24) ? base + pos % (kept.end - base + 1) : pos);
  CHECK(kept.base >= base && kept.base <= kept.end);
  check_keep();
}

static void on_frame(uint8_t type, uint32_t proc, const uint8_t *payload, size_t len, void *ctx) {
  (void)proc; (void)ctx;
  CHECK(len <= HB_MAX_PAYLOAD);
  uint8_t *p = malloc(len ? len : 1);
  if (!p) return;
  memcpy(p, payload, len);
  walk_tlv(p, len);
  switch (type) {
  case HB_CONFIGURE: fuzz_configure(p, len); break;
  case HB_MOUNT_ROOT: fuzz_mount_root(p, len); break;
  case HB_START: fuzz_start(p, len); break;
  case HB_LIMITS: fuzz_limits(p, len); break;
  case HB_READDRESS: fuzz_readdress(p, len); break;
  case HB_STDOUT: case HB_STDERR: fuzz_keep_output(type, p, len); break;
  case HB_ACK: case HB_RESEND: fuzz_offset(p, len); break;
  case HB_SIGNAL: {
    struct tlv_in it = {p, len};
    int sig, count = 0;
    while ((sig = next_signal(&it)) != 0) { CHECK(sig >= 1 && sig <= 64); CHECK(++count <= (int)len / 9); }
    break;
  }
  case HB_RESIZE: {
    unsigned short rows, cols;
    parse_resize(p, len, &rows, &cols);
    sink += rows + cols;
    break;
  }
  default:
    /* Other types carry raw bytes or nothing; run every parser on them too,
     * so the fuzzer need not hit a type byte to reach each one. */
    fuzz_configure(p, len);
    fuzz_mount_root(p, len);
    fuzz_start(p, len);
    fuzz_limits(p, len);
    fuzz_offset(p, len);
  }
  free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* The stream as one read(), then again as two, split where the first byte
   * says: the agent keeps a partial frame for the next read. */
  size_t used = 0;
  if (keep_init(&kept) < 0) return 0;
  int r = hb_split_frames(data, size, &used, on_frame, NULL);
  keep_free(&kept); /* the second pass, below, only re-splits */
  CHECK(used <= size);
  if (r < 0) CHECK(size - used >= HB_HEADER_SIZE);
  if (size > 1 && r == 0) {
    size_t cut = 1 + data[0] % (size - 1);
    uint8_t *buf = malloc(size);
    if (!buf) return 0;
    size_t have = cut, used1 = 0;
    memcpy(buf, data, cut);
    if (hb_split_frames(buf, have, &used1, on_frame, NULL) == 0) {
      memmove(buf, buf + used1, have - used1);
      have -= used1;
      memcpy(buf + have, data + cut, size - cut);
      have += size - cut;
      size_t used2 = 0;
      uint8_t *exact = malloc(have ? have : 1);
      if (exact) {
        memcpy(exact, buf, have);
        (void)hb_split_frames(exact, have, &used2, on_frame, NULL);
        CHECK(used1 + used2 == used); /* same frames, wherever the stream was cut */
        free(exact);
      }
    }
    free(buf);
  }
  return 0;
}
