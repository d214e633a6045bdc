/* HB_CONFIGURE: what a template snapshot froze and a clone must refresh
 * (hostname, wall clock, RNG state), the memory limit, and the network. */
#define _GNU_SOURCE
#include "agent.h"
#include "request.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

/* From <linux/random.h>, which musl does not ship. */
struct rand_pool_info { int entropy_count; int buf_size; unsigned buf[]; };
#define RNDADDENTROPY _IOW('R', 0x03, int[2])
#define RNDRESEEDCRNG _IO('R', 0x07)

static char dns_server[64];

const char *configured_dns(void) { return dns_server; }

/* Mixes host randomness into the pool and credits it: clones of one template
 * would otherwise share the template's RNG state. */
static void seed_rng(const uint8_t *d, uint32_t len) {
  struct { struct rand_pool_info info; uint8_t data[512]; } e;
  if (len > sizeof e.data) return; /* parse_configure bounds it already */
  e.info.entropy_count = (int)len * 8;
  e.info.buf_size = (int)len;
  memcpy(e.data, d, len);
  int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
  if (fd < 0) { agent_log("/dev/urandom: %s", strerror(errno)); return; }
  /* Without RNDADDENTROPY, at least mix it in uncredited. */
  if (ioctl(fd, RNDADDENTROPY, &e) < 0 && write(fd, d, len) < 0) agent_log("seed: %s", strerror(errno));
  /* Crediting alone does not reseed an initialised CRNG (Linux >= 5.18):
   * force it, or a clone keeps producing its template's stream. */
  if (ioctl(fd, RNDRESEEDCRNG) < 0) agent_log("RNDRESEEDCRNG: %s", strerror(errno));
  close(fd);
}

void handle_configure(const uint8_t *p, size_t n) {
  struct configure_req c;
  int malformed = parse_configure(p, n, &c) < 0;
  /* Applied in the order the host sends them; a malformed tail still applies
   * what came before it, as this agent always did. Hostname and clock failures
   * are logged, not reported: the host has no better value to offer. */
  if (c.have_hostname && sethostname((const char *)c.hostname, c.hostname_len) < 0)
    agent_log("sethostname: %s", strerror(errno));
  if (c.have_time) {
    struct timespec ts = {(time_t)(c.time_ns / 1000000000ULL), (long)(c.time_ns % 1000000000ULL)};
    if (clock_settime(CLOCK_REALTIME, &ts) < 0) agent_log("clock_settime: %s", strerror(errno));
  }
  if (c.have_seed) seed_rng(c.seed, c.seed_len);
  if (c.have_memlimit && limits_set_memory(c.memlimit) < 0) {
    send_result(errno ? errno : EINVAL, "cannot set the memory limit");
    return;
  }
  if (c.have_dns) snprintf(dns_server, sizeof dns_server, "%s", c.dns);
  if (malformed) { send_result(EINVAL, "malformed configure"); return; }
  loopback_up();
  if (*c.ipv4) {
    const char *what = "";
    int err = configure_eth0(c.ipv4, c.gw, c.have_mac ? c.mac : NULL, &what);
    if (err) {
      char msg[128];
      snprintf(msg, sizeof msg, "network: eth0 %s: %s", what, strerror(err));
      send_result(err, msg);
      return;
    }
  }
  send_result(0, NULL);
}

/* HB_READDRESS: a VM that moved to another host's bridge (live migration) gets
 * that bridge's address, gateway and DNS, and root NAME's /etc/hosts (its
 * --add-host lines, host-gateway among them) and /etc/resolv.conf follow. */
void handle_readdress(const uint8_t *p, size_t n) {
  struct readdress_req r;
  if (parse_readdress(p, n, &r) < 0) { send_result(EINVAL, r.why); return; }
  const char *what = "";
  char msg[128];
  int err = readdress_eth0(r.net.ipv4, r.net.gw, r.net.have_mac ? r.net.mac : NULL, &what);
  if (err) {
    snprintf(msg, sizeof msg, "network: eth0 %s: %s", what, strerror(err));
    send_result(err, msg);
    return;
  }
  if (r.net.have_dns) snprintf(dns_server, sizeof dns_server, "%s", r.net.dns);
  err = rewrite_etc_files(r.name, r.hosts);
  if (err) {
    snprintf(msg, sizeof msg, "/etc files of %s: %s", r.name, strerror(err));
    send_result(err, msg);
    return;
  }
  send_result(0, NULL);
}
