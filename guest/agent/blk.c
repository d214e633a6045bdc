/* Container roots on block devices (MOUNT_ROOT with T_BLOCK_LOWER/T_BLOCK_UPPER).
 *
 * The host attaches two virtio-blk disks per such root, named by their serial:
 * a read-only image filesystem (erofs, or ext4) and the container's writable
 * ext4 disk. The agent finds each by serial (/sys/block/vd* /serial: the order
 * in which the kernel enumerates virtio-mmio devices is not to be relied on),
 * drops any cached page of it (BLKFLSBUF: a VM restored from a template
 * snapshot may still cache a placeholder disk that was attached when the
 * snapshot was taken), mounts the lower read-only at /run/blk/NAME/lower, the
 * upper at /run/blk/NAME/disk (upper/ and work/ are created there on the first
 * start; a restart finds them), and an overlayfs of both at /c/NAME.
 *
 * A template of the block shape may mount a blank upper ahead (MOUNT_ROOT with
 * T_PREMOUNT, blk_premount): its clones each resume on their own copy of that
 * disk with the ext4 mounted, and a root's MOUNT_ROOT with T_PREMOUNTED moves
 * it under the root's name instead of mounting the disk (ext4 mount and the
 * creation of upper/ and work/: 45-65 ms of guest CPU under TCG).
 *
 * At POWEROFF every process is killed and every block root unmounted (the
 * ext4 upper remounted read-only if it cannot be), so the disk the host keeps
 * is clean. */
#define _GNU_SOURCE
#include "agent.h"
#include "request.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef BLKFLSBUF
#define BLKFLSBUF _IO(0x12, 97)
#endif
#define MAX_BLK_ROOTS 64

/* discard: the host deletes the disk after the main process exits (`run --rm`), so
 * blk_sync_root skips it: a sync costs a host fdatasync of the disk file. */
static struct { char name[80], lower[32], upper[32]; int discard; } blk_roots[MAX_BLK_ROOTS]; /* name "" = free */

/* The virtio-blk disks and their serials, read once at boot (blk_scan_disks,
 * before the agent's hello, so a template's snapshot carries the list to its
 * clones): reading a serial is a request to the device, about 7 ms each under
 * TCG, and a mount used to read every disk's serial once per disk it looked
 * for. virtio-mmio has no hotplug and a disk's serial is a property of its
 * device, which a clone or a pool VM keeps when its disks' files change, so
 * the list stays true for the VM's life; a serial not in it is looked for
 * again. */
#define MAX_DISKS 32
static struct { char dev[17], serial[24]; } disks[MAX_DISKS];
static int ndisks;

/* The upper mounted ahead (blk_premount): its device ("" if none). */
#define PREMOUNT_DIR "/run/blk/.premount"
static char premount_dev[17];

/* Drops the cached pages of /dev/DEV. 0 or an errno. */
static int flush_dev(const char *dev) {
  char path[32];
  snprintf(path, sizeof path, "/dev/%s", dev);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  int r = ioctl(fd, BLKFLSBUF, 0), e = errno;
  close(fd);
  return r < 0 ? e : 0;
}

void blk_scan_disks(void) {
  DIR *d = opendir("/sys/block");
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)) && ndisks < MAX_DISKS) {
    if (strncmp(e->d_name, "vd", 2) != 0 || strlen(e->d_name) >= sizeof disks[0].dev) continue;
    int known = 0;
    for (int i = 0; i < ndisks; i++) known |= !strcmp(disks[i].dev, e->d_name);
    if (known) continue;
    char path[64], buf[64];
    snprintf(path, sizeof path, "/sys/block/%s/serial", e->d_name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) continue;
    buf[n] = 0;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) buf[--n] = 0;
    if ((size_t)n >= sizeof disks[0].serial) continue; /* not one of ours */
    snprintf(disks[ndisks].dev, sizeof disks[0].dev, "%s", e->d_name);
    snprintf(disks[ndisks].serial, sizeof disks[0].serial, "%s", buf);
    ndisks++;
  }
  closedir(d);
}

/* The virtio-blk disk whose serial is SERIAL -> its index in disks[]; or
 * -ENODEV (none), -ENOTUNIQ (several). */
static int find_serial(const char *serial) {
  for (int pass = 0; pass < 2; pass++) {
    int found = -1;
    for (int i = 0; i < ndisks; i++) {
      if (strcmp(disks[i].serial, serial) != 0) continue;
      if (found >= 0) return -ENOTUNIQ;
      found = i;
    }
    if (found >= 0) return found;
    if (!pass) blk_scan_disks();
  }
  return -ENODEV;
}

/* Is PATH a mount point (its device differs from its parent's)? */
static int is_mount_point(const char *path) {
  char parent[256];
  struct stat a, b;
  if (snprintf(parent, sizeof parent, "%s/..", path) >= (int)sizeof parent) return 0;
  return stat(path, &a) == 0 && stat(parent, &b) == 0 && (a.st_dev != b.st_dev || a.st_ino == b.st_ino);
}

/* Unmounts every mount at or under PREFIX, deepest (latest) first. Busy ones are
 * detached. */
static void umount_under(const char *prefix) {
  static char line[4096], mps[256][256];
  int n = 0;
  size_t pl = strlen(prefix);
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (!f) return;
  while (fgets(line, sizeof line, f) && n < 256) {
    char mp[256];
    if (sscanf(line, "%*s %*s %*s %*s %255s", mp) != 1 || strchr(mp, '\\')) continue;
    if (strncmp(mp, prefix, pl) == 0 && (mp[pl] == 0 || mp[pl] == '/')) snprintf(mps[n++], sizeof mps[0], "%s", mp);
  }
  fclose(f);
  while (n-- > 0)
    if (umount2(mps[n], 0) < 0 && umount2(mps[n], MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
      agent_log("umount %s: %s", mps[n], strerror(errno));
}

/* Unmounts root NAME (everything under /c/NAME), its overlay, upper and lower. */
static void blk_unmount(const char *name) {
  char path[256];
  snprintf(path, sizeof path, ROOTS "/%s", name);
  umount_under(path);
  snprintf(path, sizeof path, "/run/blk/%s/disk", name);
  if (is_mount_point(path) && umount2(path, 0) < 0) {
    /* still busy: at least leave the journal clean and nothing dirty */
    agent_log("umount %s: %s; remounting it read-only", path, strerror(errno));
    if (mount(NULL, path, NULL, MS_REMOUNT | MS_RDONLY, NULL) < 0) agent_log("remount %s ro: %s", path, strerror(errno));
    (void)umount2(path, MNT_DETACH);
  }
  snprintf(path, sizeof path, "/run/blk/%s/lower", name);
  if (is_mount_point(path) && umount2(path, 0) < 0) (void)umount2(path, MNT_DETACH);
}

int blk_premount(const char *upper, char *msg, size_t cap) {
  int i = find_serial(upper), e;
  if (i < 0) {
    snprintf(msg, cap, "block device %s: %s", upper, strerror(-i));
    return -i;
  }
  if (*premount_dev) { snprintf(msg, cap, "an upper disk is already mounted ahead"); return EBUSY; }
  if (mkdir_p(PREMOUNT_DIR, 0700) < 0) { e = errno; snprintf(msg, cap, "mkdir %s: %s", PREMOUNT_DIR, strerror(e)); return e; }
  (void)chmod("/run/blk", 0700);
  char src[32];
  snprintf(src, sizeof src, "/dev/%s", disks[i].dev);
  if ((e = flush_dev(disks[i].dev))) { snprintf(msg, cap, "flush %s: %s", src, strerror(e)); return e; }
  if (mount(src, PREMOUNT_DIR, "ext4", 0, NULL) < 0) {
    e = errno;
    snprintf(msg, cap, "mount upper %s (%s): %s", upper, src, strerror(e));
    return e;
  }
  static const char *const subs[] = {"upper", "work"};
  for (int k = 0; k < 2; k++) {
    char p[64];
    snprintf(p, sizeof p, PREMOUNT_DIR "/%s", subs[k]);
    if (mkdir(p, 0755) < 0 && errno != EEXIST) {
      e = errno;
      snprintf(msg, cap, "upper disk %s: %s: %s", upper, subs[k], strerror(e));
      (void)umount2(PREMOUNT_DIR, 0);
      return e;
    }
  }
  /* Nothing dirty when the host snapshots the template: every clone's copy of
   * the disk is the file as it is now. */
  int fd = open(PREMOUNT_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || syncfs(fd) < 0) {
    e = errno;
    if (fd >= 0) close(fd);
    snprintf(msg, cap, "syncfs %s: %s", PREMOUNT_DIR, strerror(e));
    (void)umount2(PREMOUNT_DIR, 0);
    return e;
  }
  close(fd);
  snprintf(premount_dev, sizeof premount_dev, "%s", disks[i].dev);
  return 0;
}

int blk_mount_root(const char *name, const char *root, const char *lower, const char *upper, int discard_on_exit, int premounted, char *msg, size_t cap) {
  char ldev[32], udev[32], base[160], ldir[192], ddir[192], opts[640];
  int slot = -1, e;
  for (int i = 0; i < MAX_BLK_ROOTS; i++)
    if (*blk_roots[i].name && !strcmp(blk_roots[i].name, name)) {
      snprintf(msg, cap, "root %s is already mounted", name);
      return EBUSY;
    }
  if (is_mount_point(root)) { snprintf(msg, cap, "root %s is already mounted", name); return EBUSY; }
  int di[2];
  for (int i = 0; i < 2; i++) {
    const char *serial = i ? upper : lower;
    if ((di[i] = find_serial(serial)) < 0) {
      e = -di[i];
      snprintf(msg, cap, "block device %s: %s", serial, e == ENODEV ? "no virtio-blk disk with this serial" : strerror(e));
      return e;
    }
    snprintf(i ? udev : ldev, sizeof ldev, "%s", disks[di[i]].dev);
  }
  for (int i = 0; i < MAX_BLK_ROOTS; i++) {
    if (!*blk_roots[i].name) { if (slot < 0) slot = i; continue; }
    if (!strcmp(blk_roots[i].lower, ldev) || !strcmp(blk_roots[i].upper, udev) ||
        !strcmp(blk_roots[i].lower, udev) || !strcmp(blk_roots[i].upper, ldev)) {
      snprintf(msg, cap, "block device of %s or %s is in use by root %s", lower, upper, blk_roots[i].name);
      return EBUSY;
    }
  }
  if (slot < 0) { snprintf(msg, cap, "too many block roots"); return ENOSPC; }
  /* The upper mounted ahead serves only a root that says its disk is the copy
   * made for it (T_PREMOUNTED); any other root on that device would see a
   * filesystem that is not its disk's. Without one (a cold boot, a clone of a
   * template without it), the disk is mounted as usual. */
  int ahead = *premount_dev && !strcmp(premount_dev, udev);
  if (ahead && !premounted) { snprintf(msg, cap, "block device %s is mounted ahead for a new root", upper); return EBUSY; }
  if ((e = flush_dev(ldev)) || (!ahead && (e = flush_dev(udev)))) {
    snprintf(msg, cap, "flush block device: %s", strerror(e));
    return e;
  }
  snprintf(base, sizeof base, "/run/blk/%s", name);
  snprintf(ldir, sizeof ldir, "%s/lower", base);
  snprintf(ddir, sizeof ddir, "%s/disk", base);
  if (mkdir_p(ldir, 0700) < 0 || mkdir_p(ddir, 0700) < 0) {
    e = errno;
    snprintf(msg, cap, "mkdir %s: %s", base, strerror(e));
    return e;
  }
  (void)chmod("/run/blk", 0700); /* nothing in a container needs to see these */
  char src[32];
  snprintf(src, sizeof src, "/dev/%s", ldev);
  if (mount(src, ldir, "erofs", MS_RDONLY, NULL) < 0) {
    int e1 = errno;
    if (mount(src, ldir, "ext4", MS_RDONLY, "noload") < 0) {
      e = errno;
      snprintf(msg, cap, "mount lower %s (%s): erofs: %s; ext4: %s", lower, src, strerror(e1), strerror(e));
      return e;
    }
  }
  snprintf(src, sizeof src, "/dev/%s", udev);
  if (ahead ? mount(PREMOUNT_DIR, ddir, NULL, MS_MOVE, NULL) < 0 : mount(src, ddir, "ext4", 0, NULL) < 0) {
    e = errno;
    snprintf(msg, cap, "mount upper %s (%s): %s", upper, src, strerror(e));
    (void)umount2(ldir, 0);
    return e;
  }
  if (ahead) premount_dev[0] = 0; /* moved: it is this root's now */
  /* The records the cleanup below (and POWEROFF) go by. */
  snprintf(blk_roots[slot].name, sizeof blk_roots[slot].name, "%s", name);
  snprintf(blk_roots[slot].lower, sizeof blk_roots[slot].lower, "%s", ldev);
  snprintf(blk_roots[slot].upper, sizeof blk_roots[slot].upper, "%s", udev);
  blk_roots[slot].discard = discard_on_exit;
  /* upper/ and work/ at the top of the container's disk: created on its first
   * start, found on a restart. The disk's top level is the agent's alone (the
   * container writes under upper/), still nothing is followed there. */
  int disk = open(ddir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  static const char *const subs[] = {"upper", "work"};
  for (size_t i = 0; disk >= 0 && i < 2; i++) {
    if (mkdirat(disk, subs[i], 0755) < 0 && errno != EEXIST) { e = errno; goto fail_sub; }
    int fd = openat(disk, subs[i], O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) { e = errno; goto fail_sub; }
    close(fd);
    continue;
  fail_sub:
    snprintf(msg, cap, "upper disk %s: %s: %s", upper, subs[i], strerror(e));
    close(disk);
    blk_unmount_root(name);
    return e;
  }
  if (disk < 0) {
    e = errno;
    snprintf(msg, cap, "upper disk %s: %s", upper, strerror(e));
    blk_unmount_root(name);
    return e;
  }
  close(disk);
  snprintf(opts, sizeof opts, "lowerdir=%s,upperdir=%s/upper,workdir=%s/work", ldir, ddir, ddir);
  if (mount("overlay", root, "overlay", 0, opts) < 0) {
    e = errno;
    snprintf(msg, cap, "mount overlay root %s: %s", name, strerror(e));
    blk_unmount_root(name);
    return e;
  }
  return 0;
}

void blk_unmount_root(const char *name) {
  for (int i = 0; i < MAX_BLK_ROOTS; i++) {
    if (!*blk_roots[i].name || strcmp(blk_roots[i].name, name) != 0) continue;
    blk_unmount(name);
    blk_roots[i].name[0] = 0;
  }
}

int blk_is_root(const char *name) {
  for (int i = 0; i < MAX_BLK_ROOTS; i++)
    if (*blk_roots[i].name && !strcmp(blk_roots[i].name, name)) return 1;
  return 0;
}

void shutdown_roots(void) {
  int any = 0;
  for (int i = 0; i < MAX_BLK_ROOTS; i++) any |= *blk_roots[i].name != 0;
  sync();
  if (*premount_dev) { (void)umount2(PREMOUNT_DIR, 0); premount_dev[0] = 0; any = 1; }
  if (!any) return; /* 9p roots: the host holds their data */
  /* Nothing may hold a file of a disk open: every process goes (the agent,
   * PID 1, is spared by kill(-1)), and the namespaces of isolated roots,
   * which hold copies of their mounts. */
  (void)kill(-1, SIGKILL);
  struct timespec t0, now;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    pid_t p = waitpid(-1, NULL, WNOHANG);
    if (p < 0) break; /* ECHILD: all gone */
    if (p == 0) {
      clock_gettime(CLOCK_MONOTONIC, &now);
      if (now.tv_sec - t0.tv_sec >= 3) { agent_log("poweroff: processes still exiting"); break; }
      usleep(5000);
    }
  }
  close_root_namespaces();
  for (int i = 0; i < MAX_BLK_ROOTS; i++) {
    if (!*blk_roots[i].name) continue;
    blk_unmount(blk_roots[i].name);
    blk_roots[i].name[0] = 0;
  }
  sync();
}

void blk_sync_root(const char *name) {
  char path[160];
  int found = 0;
  for (int i = 0; i < MAX_BLK_ROOTS; i++)
    if (*blk_roots[i].name && !strcmp(blk_roots[i].name, name)) found = blk_roots[i].discard ? -1 : 1;
  if (found <= 0) return;
  snprintf(path, sizeof path, "/run/blk/%s/disk", name);
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  if (syncfs(fd) < 0) agent_log("syncfs %s: %s", path, strerror(errno));
  close(fd);
}
