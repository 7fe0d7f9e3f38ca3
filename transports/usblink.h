/*
 * usblink.h: the byte pipe of a USB link over a pair of bulk endpoints,
 * independent of who moves the transfers (libusb on the host, FunctionFS
 * on the gadget, a mock in tests). libagg/PROTOCOL.md ("USB links") has
 * the framing.
 *
 * Every transfer starts with an 8-byte header: "AU", a type (HELLO, DATA,
 * CLOSE), a zero byte and the 32-bit attach generation the host chose. The
 * host sends HELLO with a fresh generation when it opens the device; the
 * gadget answers with the same HELLO; from then on transfers of any other
 * generation are stale (left over from an earlier attach) and dropped. The
 * byte stream rides in DATA transfers; CLOSE ends the link.
 *
 * Once the HELLO exchange is done the usblink makes a bufferevent pair:
 * one end goes to libagg (ops->up), the other is fed from the transfers.
 */
#ifndef AGG_USBLINK_H
#define AGG_USBLINK_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct bufferevent;
struct agg_usblink;

#define AGG_USB_TRANSFER_MAX 65536  /* read buffer size; no transfer is
                                       longer */
#define AGG_USB_HEADER_LEN 8
#define AGG_USB_TRANSFER_ALIGN 8    /* no transfer shorter than the max is
                                       a multiple of this (see below) */

enum agg_usb_type {
	AGG_USB_HELLO = 1,
	AGG_USB_DATA = 2,
	AGG_USB_CLOSE = 3,
};

enum agg_usblink_role {
	AGG_USBLINK_HOST,     /* sends HELLO with its generation */
	AGG_USBLINK_GADGET,   /* answers the host's HELLO */
};

/* What agg_usblink_input() tells the transport to do with the read slot. */
enum agg_usblink_input_result {
	AGG_USBLINK_READ_AGAIN,  /* submit the read again */
	AGG_USBLINK_READ_HOLD,   /* wait for ops->want_read (libagg is full) */
	AGG_USBLINK_READ_NEW,    /* gadget: a HELLO of a new attach; end this
	                            usblink, start a new one and give it the
	                            same transfer */
	AGG_USBLINK_READ_STOP,   /* the link is over */
};

/* The transport under a usblink. */
struct agg_usblink_ops {
	/* Bytes wait to be sent: fill free write slots with
	 * agg_usblink_next_transfer(). */
	void (*want_write)(void *arg);
	/* Held reads may be submitted again. */
	void (*want_read)(void *arg);
	/* The HELLO exchange is done: bev is the link's byte pipe, the
	 * callee owns it (hands it to libagg). */
	void (*up)(void *arg, struct bufferevent *bev);
	/* The link is over (CLOSE from the peer, libagg closed it, or
	 * agg_usblink_fail()); called once. The transport stops submitting
	 * and frees the usblink later, not from this callback. */
	void (*closed)(void *arg, const char *reason);
};

/* Counters, for logs and tests. */
struct agg_usblink_stats {
	uint64_t tx_transfers, rx_transfers;
	uint64_t tx_bytes, rx_bytes;      /* stream bytes */
	uint64_t stale;                   /* transfers dropped as stale */
	uint64_t empty;                   /* zero-length transfers ignored */
};

/* Creates a usblink; the host passes a nonzero generation (the gadget 0:
 * it learns it from the HELLO). The host queues its HELLO at once. */
struct agg_usblink *agg_usblink_new(struct event_base *base,
    enum agg_usblink_role role, uint32_t generation,
    const struct agg_usblink_ops *ops, void *arg);
/* Writes the next transfer into buf (cap >= AGG_USB_TRANSFER_MAX) and
 * returns its length; 0 when there is nothing to send. */
size_t agg_usblink_next_transfer(struct agg_usblink *ul, uint8_t *buf,
    size_t cap);
/* A read completed with len bytes (0: a zero-length packet). */
enum agg_usblink_input_result agg_usblink_input(struct agg_usblink *ul,
    const uint8_t *buf, size_t len);
/* The transport failed (device gone, endpoint error): ends the link. */
void agg_usblink_fail(struct agg_usblink *ul, const char *reason);
/* Whether the link is over. */
int agg_usblink_is_closed(const struct agg_usblink *ul);
/* The attach generation (0 before a gadget's HELLO). */
uint32_t agg_usblink_generation(const struct agg_usblink *ul);
/* Counters. */
void agg_usblink_get_stats(const struct agg_usblink *ul,
    struct agg_usblink_stats *st);
/* Frees the usblink (and its end of the pair). */
void agg_usblink_free(struct agg_usblink *ul);

/* Writes a transfer header. */
void agg_usb_header_write(uint8_t *buf, enum agg_usb_type type,
    uint32_t generation);
/* Parses a transfer header; -1 if len is short or the magic is wrong. */
int agg_usb_header_read(const uint8_t *buf, size_t len,
    enum agg_usb_type *type, uint32_t *generation);
/* How many of avail stream bytes the next DATA transfer carries so that
 * the transfer is at most AGG_USB_TRANSFER_MAX long and, when shorter, not
 * a multiple of AGG_USB_TRANSFER_ALIGN (it then ends with a short packet
 * at every bulk packet size, so no zero-length packet is needed). */
size_t agg_usb_data_len(size_t avail);

#endif
