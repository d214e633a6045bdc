/* The guest's network: lo, and eth0 (virtio-net) with a static IPv4 address and
 * a default route, set with plain ioctls (no tools in the initramfs). */
#define _GNU_SOURCE
#include "agent.h"
#include "request.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <net/route.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <unistd.h>

/* Brings IFNAME up (UP != 0) or down. 0, or -1 with errno. */
static int if_set_up(int sk, const char *ifname, int up) {
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
  if (ioctl(sk, SIOCGIFFLAGS, &ifr) < 0) return -1;
  if (up) ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  else ifr.ifr_flags &= ~IFF_UP;
  return ioctl(sk, SIOCSIFFLAGS, &ifr);
}

static void set_sin(struct sockaddr *sa, struct in_addr a) {
  struct sockaddr_in *sin = (struct sockaddr_in *)sa;
  memset(sin, 0, sizeof *sin);
  sin->sin_family = AF_INET;
  sin->sin_addr = a;
}

void loopback_up(void) {
  int sk = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sk < 0) { agent_log("socket: %s", strerror(errno)); return; }
  if (if_set_up(sk, "lo", 1) < 0) agent_log("lo up: %s", strerror(errno));
  close(sk);
}

/* Configures eth0 (the virtio-net NIC) with an IPv4 address "a.b.c.d/prefix"
 * and a default route. Returns 0 or an errno; *what names the step that failed. */
int configure_eth0(const char *cidr, const char *gw, const uint8_t *mac, const char **what) {
  struct in_addr a, g, m;
  *what = "address";
  if (parse_ipv4_cidr(cidr, &a, &m)) return EINVAL;
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
  if (if_set_up(sk, "eth0", 1) < 0) { err = errno; goto out; }
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

/* A migrated VM on another host's bridge: eth0 goes down (its neighbours and
 * routes flushed: the old gateway's MAC is not the new one's, even at the same
 * address), then is configured as at boot. arp_notify makes the link's coming
 * up announce the address (a gratuitous ARP), so the new bridge learns it. */
int readdress_eth0(const char *cidr, const char *gw, const uint8_t *mac, const char **what) {
  *what = "link down";
  int sk = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sk < 0) return errno;
  int err = if_set_up(sk, "eth0", 0) < 0 ? errno : 0;
  close(sk);
  if (err) return err;
  int fd = open("/proc/sys/net/ipv4/conf/eth0/arp_notify", O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, "1", 1) != 1) agent_log("arp_notify: %s", strerror(errno));
  if (fd >= 0) close(fd);
  return configure_eth0(cidr, gw, mac, what);
}
