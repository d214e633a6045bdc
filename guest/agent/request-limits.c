/* Parsers of HB_LIMITS, of START's sysctls and of HB_ACK's and HB_RESEND's offset (request.h): pure, as the rest
 * of request.c, and fuzzed with it (guest/fuzz/fuzz_proto.c). */
#include "request.h"
#include <string.h>

static int all_digits(const char *s, size_t n) {
  if (!n) return 0;
  for (size_t i = 0; i < n; i++) if (s[i] < '0' || s[i] > '9') return 0;
  return 1;
}

int parse_limits(const uint8_t *p, size_t n, struct limits_req *l) {
  struct tlv_in it = {p, n};
  uint8_t tag;
  const uint8_t *d;
  uint32_t len;
  int rc;
  memset(l, 0, sizeof *l);
  while ((rc = tlv_next(&it, &tag, &d, &len)) == 1) {
    if (tag == T_NAME) { if (field_str(d, len, l->name, sizeof l->name)) return -1; }
    else if (tag == T_MEMLIMIT) { if (len != 8) return -1; l->memory = be64(d); l->have_memory = 1; }
    else if (tag == T_CPU_MAX) {
      if (field_str(d, len, l->cpu_max, sizeof l->cpu_max)) return -1;
      const char *sp = strchr(l->cpu_max, ' ');
      size_t q = sp ? (size_t)(sp - l->cpu_max) : 0;
      if (!sp || !(all_digits(l->cpu_max, q) || (q == 3 && !strncmp(l->cpu_max, "max", 3))) || !all_digits(sp + 1, strlen(sp + 1))) return -1;
      l->have_cpu_max = 1;
    }
    else if (tag == T_CPU_WEIGHT) { if (len != 4 || be32(d) < 1 || be32(d) > 10000) return -1; l->cpu_weight = be32(d); }
    else if (tag == T_PIDS_MAX) { if (len != 4) return -1; l->pids = be32(d); l->have_pids = 1; }
  }
  return rc < 0 || !valid_name(l->name) ? -1 : 0;
}

int parse_sysctl(const char *kv, char *path, size_t cap, const char **value) {
  const char *eq = strchr(kv, '=');
  size_t k = eq ? (size_t)(eq - kv) : 0;
  if (!eq || k == 0 || k >= cap || kv[0] == '.' || kv[0] == '/') return -1;
  for (size_t i = 0; i < k; i++) {
    char c = kv[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.' || c == '/')) return -1;
    path[i] = c == '.' ? '/' : c;
    if (i && path[i] == '/' && path[i - 1] == '/') return -1; /* no empty component, no ".." */
  }
  path[k] = 0;
  if (path[k - 1] == '/') return -1;
  *value = eq + 1;
  return 0;
}

/* ---- ack, resend --------------------------------------------------------------- */

int parse_offset(const uint8_t *p, size_t n, uint64_t *pos) {
  struct tlv_in it = {p, n};
  uint8_t tag;
  const uint8_t *d;
  uint32_t len;
  int r, found = 0;
  while ((r = tlv_next(&it, &tag, &d, &len)) == 1)
    if (tag == T_OFFSET && len == 8) { *pos = be64(d); found = 1; }
  return r == 0 && found ? 0 : -1;
}
