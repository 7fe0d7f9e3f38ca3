/*
 * usbgadget.c: agg-server's USB device side. See usbgadget.h.
 *
 * FunctionFS endpoint files have no poll(); the choices are a thread per
 * endpoint or kernel AIO. AIO keeps everything in the one event loop: each
 * endpoint has a few reads or writes in flight (io_submit), and their
 * completions raise an eventfd that libevent watches. ep0 can be polled and
 * carries the BIND/ENABLE/DISABLE/UNBIND/SETUP/SUSPEND events.
 *
 * Every ENABLE starts a new epoch; a transfer from an older epoch that
 * completes late is ignored. Within an epoch the usblink (usblink.c) sorts
 * stale transfers out by their attach generation.
 */
#include "usbgadget.h"

#include <sys/types.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/eventfd.h>
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <linux/aio_abi.h>
#include <linux/usb/ch9.h>
#include <linux/usb/functionfs.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "agg/log.h"
#include "agg/url.h"
#include "usblink.h"

#define UG_CONFIGFS "/sys/kernel/config"
#define UG_GADGETS UG_CONFIGFS "/usb_gadget"
#define UG_UDC_CLASS "/sys/class/udc"
#define UG_MOUNT_BASE "/run/agg-usb"
#define UG_NREADS 4
#define UG_NWRITES 4
#define UG_NSLOTS (UG_NREADS + UG_NWRITES)

/* One read or write buffer and its AIO control block. */
struct ug_slot {
	struct agg_usbgadget *g;
	struct iocb cb;
	uint8_t *buf;
	int write;
	int busy;                     /* submitted, not completed */
	int held;                     /* a read waiting for want_read */
	unsigned epoch;
};

struct agg_usbgadget {
	struct event_base *base;
	agg_usbgadget_link_cb cb;
	void *arg;
	char udc[128];
	char name[160];               /* gadget and FunctionFS instance */
	char gadget_dir[300];
	char mount_dir[300];
	int mounted;
	int ep0, ep_in, ep_out;
	int efd;
	aio_context_t aio;
	struct event *ep0_ev, *aio_ev, *renew_ev;
	int enabled;
	unsigned epoch;
	unsigned links;               /* links served, for names */
	struct agg_usblink *ul;
	struct ug_slot slots[UG_NSLOTS];
};

/* The FunctionFS descriptors: one vendor-specific interface with bulk IN
 * (ep1) and bulk OUT (ep2) at full, high and SuperSpeed. */
struct ug_fs_hs {
	struct usb_interface_descriptor intf;
	struct usb_endpoint_descriptor_no_audio in, out;
} __attribute__((packed));

struct ug_ss {
	struct usb_interface_descriptor intf;
	struct usb_endpoint_descriptor_no_audio in;
	struct usb_ss_ep_comp_descriptor in_comp;
	struct usb_endpoint_descriptor_no_audio out;
	struct usb_ss_ep_comp_descriptor out_comp;
} __attribute__((packed));

struct ug_descriptors {
	struct usb_functionfs_descs_head_v2 header;
	uint32_t fs_count, hs_count, ss_count;
	struct ug_fs_hs fs, hs;
	struct ug_ss ss;
} __attribute__((packed));

#define UG_INTERFACE_NAME "agg link"

struct ug_strings {
	struct usb_functionfs_strings_head header;
	uint16_t lang;
	char str[sizeof(UG_INTERFACE_NAME)];
} __attribute__((packed));

static void ug_fill(struct agg_usbgadget *g);
static void ug_submit_reads(struct agg_usbgadget *g);

/* Thin wrappers for the AIO system calls (glibc has none). */
static int ug_io_setup(unsigned nr, aio_context_t *ctx)
{
	return (int)syscall(SYS_io_setup, nr, ctx);
}

/* Destroys an AIO context. */
static int ug_io_destroy(aio_context_t ctx)
{
	return (int)syscall(SYS_io_destroy, ctx);
}

/* Submits one control block. */
static int ug_io_submit(aio_context_t ctx, struct iocb *cb)
{
	struct iocb *cbs[1] = { cb };

	return (int)syscall(SYS_io_submit, ctx, 1L, cbs);
}

/* Cancels one control block. */
static int ug_io_cancel(aio_context_t ctx, struct iocb *cb)
{
	struct io_event ev;

	return (int)syscall(SYS_io_cancel, ctx, cb, &ev);
}

/* Collects up to n completions without waiting. */
static int ug_io_getevents(aio_context_t ctx, long n, struct io_event *evs)
{
	struct timespec zero = { 0, 0 };

	return (int)syscall(SYS_io_getevents, ctx, 0L, n, evs, &zero);
}

/* Writes text to a configfs attribute; -1 with errno set on failure. */
static int ug_write_attr(const char *dir, const char *attr, const char *text)
{
	char path[512];
	ssize_t n;
	int fd, saved;

	snprintf(path, sizeof(path), "%s/%s", dir, attr);
	if ((fd = open(path, O_WRONLY | O_CLOEXEC)) < 0)
		return -1;
	n = write(fd, text, strlen(text));
	saved = errno;
	close(fd);
	errno = saved;
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* Creates a directory; an existing one is fine. */
static int ug_mkdir(const char *path)
{
	return mkdir(path, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

/* Picks the UDC: the one named, or the first in /sys/class/udc. */
static int ug_find_udc(struct agg_usbgadget *g, const char *want,
    const char *url, char *err, size_t errlen)
{
	struct dirent *de;
	char path[300];
	DIR *d;

	if ((d = opendir(UG_UDC_CLASS)) == NULL && want[0] == '\0') {
		snprintf(err, errlen, "cannot serve %s: no USB device "
		    "controller (%s is missing; load a UDC driver, e.g. "
		    "modprobe dummy_hcd)", url, UG_UDC_CLASS);
		return -1;
	}
	if (want[0] != '\0') {
		if (d != NULL)
			closedir(d);
		snprintf(path, sizeof(path), "%s/%.128s", UG_UDC_CLASS, want);
		if (access(path, F_OK) != 0) {
			snprintf(err, errlen, "cannot serve %s: no UDC named "
			    "'%.128s' in %s", url, want, UG_UDC_CLASS);
			return -1;
		}
		snprintf(g->udc, sizeof(g->udc), "%s", want);
		return 0;
	}
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			break;
	if (de != NULL)
		snprintf(g->udc, sizeof(g->udc), "%.127s", de->d_name);
	closedir(d);
	if (g->udc[0] == '\0') {
		snprintf(err, errlen, "cannot serve %s: no USB device "
		    "controller in %s (load a UDC driver, e.g. modprobe "
		    "dummy_hcd)", url, UG_UDC_CLASS);
		return -1;
	}
	return 0;
}

/* Removes the gadget's configfs tree and mount, best effort (also what a
 * crashed earlier run left behind). */
static void ug_remove_tree(struct agg_usbgadget *g)
{
	char path[512];

	if (access(g->gadget_dir, F_OK) == 0)
		ug_write_attr(g->gadget_dir, "UDC", "\n");
	if (g->mounted || access(g->mount_dir, F_OK) == 0) {
		umount(g->mount_dir);
		rmdir(g->mount_dir);
		g->mounted = 0;
	}
	snprintf(path, sizeof(path), "%s/configs/c.1/ffs.%s", g->gadget_dir,
	    g->name);
	unlink(path);
	snprintf(path, sizeof(path), "%s/configs/c.1/strings/0x409",
	    g->gadget_dir);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/configs/c.1", g->gadget_dir);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/functions/ffs.%s", g->gadget_dir,
	    g->name);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/strings/0x409", g->gadget_dir);
	rmdir(path);
	rmdir(g->gadget_dir);
}

/* Creates the configfs gadget with its FunctionFS function. */
static int ug_make_tree(struct agg_usbgadget *g, unsigned vid, unsigned pid,
    const char *url, char *err, size_t errlen)
{
	char path[700], text[700], host[256];

	if (access(UG_GADGETS, F_OK) != 0) {
		if (access(UG_CONFIGFS, F_OK) == 0)
			mount("none", UG_CONFIGFS, "configfs", 0, NULL);
		if (access(UG_GADGETS, F_OK) != 0) {
			snprintf(err, errlen, "cannot serve %s: %s is missing: "
			    "configfs is not mounted or libcomposite is not "
			    "loaded (modprobe libcomposite; mount -t configfs "
			    "none %s)", url, UG_GADGETS, UG_CONFIGFS);
			return -1;
		}
	}
	ug_remove_tree(g);
	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "agg");
	host[sizeof(host) - 1] = '\0';
	if (mkdir(g->gadget_dir, 0755) != 0) {
		snprintf(err, errlen, "cannot serve %s: cannot create %s: %s",
		    url, g->gadget_dir, strerror(errno));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/strings/0x409", g->gadget_dir);
	if (ug_mkdir(path) != 0)
		goto fail;
	snprintf(text, sizeof(text), "0x%04x\n", vid);
	if (ug_write_attr(g->gadget_dir, "idVendor", text) != 0)
		goto fail;
	snprintf(text, sizeof(text), "0x%04x\n", pid);
	if (ug_write_attr(g->gadget_dir, "idProduct", text) != 0 ||
	    ug_write_attr(g->gadget_dir, "bcdDevice", "0x0100\n") != 0 ||
	    ug_write_attr(path, "manufacturer", "agg\n") != 0 ||
	    ug_write_attr(path, "product", "agg link\n") != 0 ||
	    ug_write_attr(path, "serialnumber", host) != 0)
		goto fail;
	snprintf(path, sizeof(path), "%s/configs/c.1/strings/0x409",
	    g->gadget_dir);
	snprintf(text, sizeof(text), "%s/configs/c.1", g->gadget_dir);
	if (ug_mkdir(text) != 0 || ug_mkdir(path) != 0 ||
	    ug_write_attr(path, "configuration", "agg\n") != 0 ||
	    ug_write_attr(text, "MaxPower", "100\n") != 0)
		goto fail;
	snprintf(path, sizeof(path), "%s/functions/ffs.%s", g->gadget_dir,
	    g->name);
	if (mkdir(path, 0755) != 0) {
		if (errno == ENOENT || errno == ENODEV)
			snprintf(err, errlen, "cannot serve %s: FunctionFS is "
			    "not available: the usb_f_fs module is missing "
			    "(modprobe usb_f_fs)", url);
		else
			snprintf(err, errlen, "cannot serve %s: cannot create "
			    "%s: %s", url, path, strerror(errno));
		ug_remove_tree(g);
		return -1;
	}
	snprintf(text, sizeof(text), "%s/configs/c.1/ffs.%s", g->gadget_dir,
	    g->name);
	if (symlink(path, text) != 0)
		goto fail;
	if (ug_mkdir("/run") != 0 || ug_mkdir(UG_MOUNT_BASE) != 0 ||
	    ug_mkdir(g->mount_dir) != 0)
		goto fail;
	if (mount(g->name, g->mount_dir, "functionfs", 0, NULL) != 0) {
		snprintf(err, errlen, "cannot serve %s: cannot mount "
		    "FunctionFS '%s' on %s: %s", url, g->name, g->mount_dir,
		    errno == ENODEV ? "the kernel has no functionfs "
		    "(modprobe usb_f_fs)" : strerror(errno));
		ug_remove_tree(g);
		return -1;
	}
	g->mounted = 1;
	return 0;
fail:
	snprintf(err, errlen, "cannot serve %s: cannot set up the gadget in "
	    "%s: %s", url, g->gadget_dir, strerror(errno));
	ug_remove_tree(g);
	return -1;
}

/* Fills one full/high speed descriptor set. */
static void ug_fill_fs_hs(struct ug_fs_hs *d, uint16_t max_packet)
{
	memset(d, 0, sizeof(*d));
	d->intf.bLength = sizeof(d->intf);
	d->intf.bDescriptorType = USB_DT_INTERFACE;
	d->intf.bNumEndpoints = 2;
	d->intf.bInterfaceClass = USB_CLASS_VENDOR_SPEC;
	d->intf.iInterface = 1;
	d->in.bLength = sizeof(d->in);
	d->in.bDescriptorType = USB_DT_ENDPOINT;
	d->in.bEndpointAddress = 1 | USB_DIR_IN;
	d->in.bmAttributes = USB_ENDPOINT_XFER_BULK;
	d->in.wMaxPacketSize = htole16(max_packet);
	d->out = d->in;
	d->out.bEndpointAddress = 2 | USB_DIR_OUT;
}

/* Writes the descriptors and strings to ep0 (before binding the UDC). */
static int ug_write_descriptors(struct agg_usbgadget *g)
{
	struct ug_descriptors d;
	struct ug_strings s;
	struct ug_fs_hs hs;

	memset(&d, 0, sizeof(d));
	d.header.magic = htole32(FUNCTIONFS_DESCRIPTORS_MAGIC_V2);
	d.header.length = htole32(sizeof(d));
	d.header.flags = htole32(FUNCTIONFS_HAS_FS_DESC |
	    FUNCTIONFS_HAS_HS_DESC | FUNCTIONFS_HAS_SS_DESC);
	d.fs_count = htole32(3);
	d.hs_count = htole32(3);
	d.ss_count = htole32(5);
	ug_fill_fs_hs(&d.fs, 64);
	ug_fill_fs_hs(&d.hs, 512);
	ug_fill_fs_hs(&hs, 1024);
	d.ss.intf = hs.intf;
	d.ss.in = hs.in;
	d.ss.out = hs.out;
	d.ss.in_comp.bLength = USB_DT_SS_EP_COMP_SIZE;
	d.ss.in_comp.bDescriptorType = USB_DT_SS_ENDPOINT_COMP;
	d.ss.out_comp = d.ss.in_comp;
	memset(&s, 0, sizeof(s));
	s.header.magic = htole32(FUNCTIONFS_STRINGS_MAGIC);
	s.header.length = htole32(sizeof(s));
	s.header.str_count = htole32(1);
	s.header.lang_count = htole32(1);
	s.lang = htole16(0x0409);
	memcpy(s.str, UG_INTERFACE_NAME, sizeof(UG_INTERFACE_NAME));
	if (write(g->ep0, &d, sizeof(d)) != (ssize_t)sizeof(d) ||
	    write(g->ep0, &s, sizeof(s)) != (ssize_t)sizeof(s))
		return -1;
	return 0;
}

/* Submits one slot's read or write of len bytes. */
static int ug_submit(struct agg_usbgadget *g, struct ug_slot *sl, size_t len)
{
	memset(&sl->cb, 0, sizeof(sl->cb));
	sl->cb.aio_data = (uint64_t)(uintptr_t)sl;
	sl->cb.aio_lio_opcode = sl->write ? IOCB_CMD_PWRITE : IOCB_CMD_PREAD;
	sl->cb.aio_fildes = (uint32_t)(sl->write ? g->ep_in : g->ep_out);
	sl->cb.aio_buf = (uint64_t)(uintptr_t)sl->buf;
	sl->cb.aio_nbytes = len;
	sl->cb.aio_flags = IOCB_FLAG_RESFD;
	sl->cb.aio_resfd = (uint32_t)g->efd;
	if (ug_io_submit(g->aio, &sl->cb) != 1)
		return -1;
	sl->busy = 1;
	sl->held = 0;
	sl->epoch = g->epoch;
	return 0;
}

/* Submits every idle read slot (not those held for flow control). */
static void ug_submit_reads(struct agg_usbgadget *g)
{
	char why[160];
	size_t i;

	for (i = 0; i < UG_NREADS && g->enabled && g->ul != NULL &&
	    !agg_usblink_is_closed(g->ul); i++) {
		struct ug_slot *sl = &g->slots[i];

		if (sl->busy || sl->held)
			continue;
		if (ug_submit(g, sl, AGG_USB_TRANSFER_MAX) != 0) {
			snprintf(why, sizeof(why), "cannot read from the USB "
			    "host: %s", strerror(errno));
			agg_usblink_fail(g->ul, why);
			return;
		}
	}
}

/* Fills the idle write slots with the usblink's transfers. */
static void ug_fill(struct agg_usbgadget *g)
{
	char why[160];
	size_t i, n;

	for (i = UG_NREADS; i < UG_NSLOTS && g->enabled && g->ul != NULL;
	    i++) {
		struct ug_slot *sl = &g->slots[i];

		if (sl->busy)
			continue;
		n = agg_usblink_next_transfer(g->ul, sl->buf,
		    AGG_USB_TRANSFER_MAX);
		if (n == 0)
			return;
		if (ug_submit(g, sl, n) != 0) {
			snprintf(why, sizeof(why), "cannot write to the USB "
			    "host: %s", strerror(errno));
			agg_usblink_fail(g->ul, why);
			return;
		}
	}
}

/* usblink: bytes wait to be sent. */
static void usbgadget_want_write_cb(void *arg)
{
	ug_fill(arg);
}

/* usblink: held reads may go on. */
static void usbgadget_want_read_cb(void *arg)
{
	struct agg_usbgadget *g = arg;
	size_t i;

	for (i = 0; i < UG_NREADS; i++)
		g->slots[i].held = 0;
	ug_submit_reads(g);
}

/* usblink: the host said HELLO; the link goes to the server. */
static void usbgadget_up_cb(void *arg, struct bufferevent *bev)
{
	struct agg_usbgadget *g = arg;
	char name[200];

	g->links++;
	snprintf(name, sizeof(name), "usb-gadget:%s#%u", g->udc, g->links);
	agg_log_info("USB host attached on %s (generation %08x)", g->udc,
	    agg_usblink_generation(g->ul));
	g->cb(bev, name, g->arg);
}

/* usblink: the link is over; a new one waits for the next HELLO. */
static void usbgadget_closed_cb(void *arg, const char *reason)
{
	struct agg_usbgadget *g = arg;

	agg_log_info("USB link on %s ended: %s", g->udc, reason);
	event_active(g->renew_ev, 0, 0);
}

static const struct agg_usblink_ops ug_usblink_ops = {
	.want_write = usbgadget_want_write_cb,
	.want_read = usbgadget_want_read_cb,
	.up = usbgadget_up_cb,
	.closed = usbgadget_closed_cb,
};

/* Replaces a finished usblink with a fresh one that waits for HELLO. */
static void ug_renew(struct agg_usbgadget *g)
{
	if (g->ul != NULL && !agg_usblink_is_closed(g->ul))
		return;
	agg_usblink_free(g->ul);
	g->ul = NULL;
	if (!g->enabled)
		return;
	g->ul = agg_usblink_new(g->base, AGG_USBLINK_GADGET, 0,
	    &ug_usblink_ops, g);
	if (g->ul == NULL) {
		agg_log_error("USB gadget on %s: out of memory", g->udc);
		return;
	}
	usbgadget_want_read_cb(g);
}

/* Deferred: a usblink ended. */
static void usbgadget_renew_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	ug_renew(arg);
}

/* One read completed within the current epoch. */
static void ug_read_done(struct agg_usbgadget *g, struct ug_slot *sl,
    long res)
{
	enum agg_usblink_input_result r;
	char why[160];

	if (g->ul == NULL)
		return;
	if (res < 0) {
		snprintf(why, sizeof(why), "USB read failed: %s",
		    strerror((int)-res));
		agg_usblink_fail(g->ul, why);
		return;
	}
	r = agg_usblink_input(g->ul, sl->buf, (size_t)res);
	if (r == AGG_USBLINK_READ_NEW) {
		agg_usblink_free(g->ul);
		g->ul = NULL;
		ug_renew(g);
		if (g->ul != NULL)
			r = agg_usblink_input(g->ul, sl->buf, (size_t)res);
	}
	if (r == AGG_USBLINK_READ_HOLD)
		sl->held = 1;
}

/* AIO completions arrived: read the eventfd and collect them, then
 * submit again. Submitting only after collecting keeps a transfer that
 * fails at once (an endpoint going away) from looping here: its
 * completion raises the eventfd and comes back through the event loop,
 * where ep0's DISABLE gets its turn. */
static void usbgadget_aio_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agg_usbgadget *g = arg;
	struct io_event evs[UG_NSLOTS];
	uint64_t count;
	char why[160];
	int n, i, rounds;

	(void)what;
	if (read((int)fd, &count, sizeof(count)) < 0)
		return;
	for (rounds = 0; rounds < 4 &&
	    (n = ug_io_getevents(g->aio, UG_NSLOTS, evs)) > 0; rounds++) {
		for (i = 0; i < n; i++) {
			struct ug_slot *sl =
			    (struct ug_slot *)(uintptr_t)evs[i].data;

			sl->busy = 0;
			if (sl->epoch != g->epoch || !g->enabled)
				continue;
			if (!sl->write)
				ug_read_done(g, sl, (long)evs[i].res);
			else if ((long)evs[i].res < 0 && g->ul != NULL) {
				snprintf(why, sizeof(why), "USB write failed: "
				    "%s", strerror((int)-(long)evs[i].res));
				agg_usblink_fail(g->ul, why);
			}
		}
	}
	ug_submit_reads(g);
	ug_fill(g);
}

/* Cancels every transfer in flight (they complete with an error). */
static void ug_cancel_all(struct agg_usbgadget *g)
{
	size_t i;

	for (i = 0; i < UG_NSLOTS; i++) {
		g->slots[i].held = 0;
		if (g->slots[i].busy)
			ug_io_cancel(g->aio, &g->slots[i].cb);
	}
}

/* The host configured us: a new epoch and a usblink waiting for HELLO. */
static void ug_enable(struct agg_usbgadget *g)
{
	if (g->enabled)
		return;
	g->enabled = 1;
	g->epoch++;
	if (g->ul != NULL)
		agg_usblink_fail(g->ul, "the USB host attached again");
	agg_usblink_free(g->ul);
	g->ul = NULL;
	ug_renew(g);
}

/* The host went away (unplugged, unconfigured, or the UDC unbound). */
static void ug_disable(struct agg_usbgadget *g, const char *why)
{
	if (!g->enabled)
		return;
	g->enabled = 0;
	g->epoch++;
	if (g->ul != NULL)
		agg_usblink_fail(g->ul, why);
	ug_cancel_all(g);
}

/* ep0 events. */
static void usbgadget_ep0_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agg_usbgadget *g = arg;
	struct usb_functionfs_event evs[4];
	ssize_t n;
	size_t i;

	(void)what;
	if ((n = read((int)fd, evs, sizeof(evs))) <= 0)
		return;
	for (i = 0; i < (size_t)n / sizeof(evs[0]); i++) {
		switch (evs[i].type) {
		case FUNCTIONFS_BIND:
			agg_log_debug("USB gadget on %s: bound", g->udc);
			break;
		case FUNCTIONFS_ENABLE:
			agg_log_info("USB gadget on %s: configured by the "
			    "host", g->udc);
			ug_enable(g);
			break;
		case FUNCTIONFS_DISABLE:
			agg_log_info("USB gadget on %s: disabled", g->udc);
			ug_disable(g, "USB host went away (disabled)");
			break;
		case FUNCTIONFS_UNBIND:
			agg_log_info("USB gadget on %s: unbound", g->udc);
			ug_disable(g, "USB gadget unbound from its UDC");
			break;
		case FUNCTIONFS_SUSPEND:
			agg_log_debug("USB gadget on %s: suspended", g->udc);
			break;
		case FUNCTIONFS_RESUME:
			agg_log_debug("USB gadget on %s: resumed", g->udc);
			break;
		case FUNCTIONFS_SETUP:
			/* No class or vendor requests: stall them with a
			 * zero-length transfer against the data stage's
			 * direction (reading answers an IN request, writing
			 * an OUT one; the kernel stalls the mismatch). */
			if (evs[i].u.setup.bRequestType & USB_DIR_IN) {
				if (read((int)fd, NULL, 0) < 0)
					agg_log_debug("stalled a request");
			} else if (write((int)fd, NULL, 0) < 0) {
				agg_log_debug("stalled a request");
			}
			break;
		default:
			break;
		}
	}
}

/* Opens one FunctionFS file. */
static int ug_open_ep(struct agg_usbgadget *g, const char *ep, int flags)
{
	char path[400];

	snprintf(path, sizeof(path), "%s/%s", g->mount_dir, ep);
	return open(path, flags | O_CLOEXEC);
}

/* Sets the gadget up. */
struct agg_usbgadget *agg_usbgadget_new(struct event_base *base,
    const struct agg_url *url, unsigned vid, unsigned pid,
    agg_usbgadget_link_cb cb, void *arg, char *err, size_t errlen)
{
	struct agg_usbgadget *g;
	size_t i;
	char *p;

	if ((g = calloc(1, sizeof(*g))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	g->base = base;
	g->cb = cb;
	g->arg = arg;
	g->ep0 = g->ep_in = g->ep_out = g->efd = -1;
	if (ug_find_udc(g, url->udc, url->text, err, errlen) != 0) {
		free(g);
		return NULL;
	}
	snprintf(g->name, sizeof(g->name), "agg-%s", g->udc);
	for (p = g->name; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '-'))
			*p = '_';
	snprintf(g->gadget_dir, sizeof(g->gadget_dir), "%s/%s", UG_GADGETS,
	    g->name);
	snprintf(g->mount_dir, sizeof(g->mount_dir), "%s/%s", UG_MOUNT_BASE,
	    g->name);
	if (ug_make_tree(g, vid, pid, url->text, err, errlen) != 0) {
		free(g);
		return NULL;
	}
	if ((g->ep0 = ug_open_ep(g, "ep0", O_RDWR)) < 0 ||
	    ug_write_descriptors(g) != 0) {
		snprintf(err, errlen, "cannot serve %s: cannot write the "
		    "FunctionFS descriptors to %s/ep0: %s", url->text,
		    g->mount_dir, strerror(errno));
		goto fail;
	}
	if ((g->ep_in = ug_open_ep(g, "ep1", O_RDWR | O_NONBLOCK)) < 0 ||
	    (g->ep_out = ug_open_ep(g, "ep2", O_RDWR | O_NONBLOCK)) < 0) {
		snprintf(err, errlen, "cannot serve %s: cannot open the "
		    "endpoint files in %s: %s", url->text, g->mount_dir,
		    strerror(errno));
		goto fail;
	}
	if ((g->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0 ||
	    ug_io_setup(UG_NSLOTS * 2, &g->aio) != 0) {
		snprintf(err, errlen, "cannot serve %s: cannot set up "
		    "asynchronous I/O: %s", url->text, strerror(errno));
		goto fail;
	}
	for (i = 0; i < UG_NSLOTS; i++) {
		g->slots[i].g = g;
		g->slots[i].write = i >= UG_NREADS;
		if ((g->slots[i].buf = malloc(AGG_USB_TRANSFER_MAX)) == NULL) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
	}
	evutil_make_socket_nonblocking(g->ep0);
	g->ep0_ev = event_new(base, g->ep0, EV_READ | EV_PERSIST,
	    usbgadget_ep0_cb, g);
	g->aio_ev = event_new(base, g->efd, EV_READ | EV_PERSIST,
	    usbgadget_aio_cb, g);
	g->renew_ev = event_new(base, -1, 0, usbgadget_renew_cb, g);
	if (g->ep0_ev == NULL || g->aio_ev == NULL || g->renew_ev == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	event_add(g->ep0_ev, NULL);
	event_add(g->aio_ev, NULL);
	if (ug_write_attr(g->gadget_dir, "UDC", g->udc) != 0) {
		snprintf(err, errlen, "cannot serve %s: cannot bind the "
		    "gadget to UDC %s: %s", url->text, g->udc,
		    errno == EBUSY ? "it is in use by another gadget" :
		    strerror(errno));
		goto fail;
	}
	agg_log_info("USB gadget %04x:%04x on %s", vid, pid, g->udc);
	return g;
fail:
	agg_usbgadget_free(g);
	return NULL;
}

/* Unbinds and removes the gadget. */
void agg_usbgadget_free(struct agg_usbgadget *g)
{
	size_t i;

	if (g == NULL)
		return;
	if (g->ul != NULL && !agg_usblink_is_closed(g->ul))
		agg_usblink_fail(g->ul, "USB gadget stopped");
	agg_usblink_free(g->ul);
	if (g->aio != 0) {
		ug_cancel_all(g);
		ug_io_destroy(g->aio);
	}
	if (g->ep0_ev != NULL)
		event_free(g->ep0_ev);
	if (g->aio_ev != NULL)
		event_free(g->aio_ev);
	if (g->renew_ev != NULL)
		event_free(g->renew_ev);
	if (g->efd >= 0)
		close(g->efd);
	if (g->ep_in >= 0)
		close(g->ep_in);
	if (g->ep_out >= 0)
		close(g->ep_out);
	ug_write_attr(g->gadget_dir, "UDC", "\n");
	if (g->ep0 >= 0)
		close(g->ep0);
	ug_remove_tree(g);
	for (i = 0; i < UG_NSLOTS; i++)
		free(g->slots[i].buf);
	free(g);
}
