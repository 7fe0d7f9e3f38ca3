/*
 * policy.h: which destinations agg-server connects to.
 *
 * A policy is an ordered list of rules from --allow RULE and --deny RULE.
 * The first rule that matches a destination decides; when none matches,
 * the destination is allowed. In insecure mode (no secret) built-in rules
 * after the user's deny loopback, private, link-local, unspecified,
 * broadcast and multicast addresses.
 *
 * RULE is TARGET or TARGET:PORTS, where PORTS is a port (443) or an
 * inclusive range (8000-8999), and TARGET is one of
 *   1.2.3.4, 1.2.3.0/24          an IPv4 address or network
 *   [2001:db8::1], [2001:db8::]/32
 *                                an IPv6 address or network; the brackets
 *                                may be left out when no :PORTS follows
 *   example.com                  that host name, case-insensitive
 *   *.example.com                any name under example.com, but not
 *                                example.com itself
 *   *                            every destination
 * A network's host bits are ignored (10.1.2.3/8 is 10.0.0.0/8). An
 * IPv4-mapped IPv6 address (::ffff:a.b.c.d) is matched as its IPv4
 * address.
 *
 * A destination is a port and an address, plus the host name when the
 * client gave one. Address rules match the address, name rules the name.
 * A name target is checked before it is resolved (policy_check() with no
 * address) and then once per address it resolves to.
 */
#ifndef AGG_POLICY_H
#define AGG_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sockaddr;
struct policy;

enum policy_action {
	POLICY_ALLOW,
	POLICY_DENY,
};

enum policy_verdict {
	POLICY_VERDICT_ALLOW,
	POLICY_VERDICT_DENY,
	POLICY_VERDICT_NEED_ADDRESS, /* an address rule may decide */
};

/* Creates an empty policy (allows everything). NULL if out of memory. */
struct policy *policy_new(void);
/* Frees a policy. */
void policy_free(struct policy *p);
/* Parses rule and appends it. Returns 0, or -1 with a one-line reason in
 * err (without the rule itself, which the caller names). */
int policy_add(struct policy *p, enum policy_action action, const char *rule,
    char *err, size_t errlen);
/* Turns the insecure-mode built-in denials on or off. */
void policy_set_insecure(struct policy *p, bool insecure);
/* Number of rules the user added. */
size_t policy_rules(const struct policy *p);
/* Decides for a destination: name (NULL for an address target), addr
 * (AF_INET or AF_INET6, NULL before resolution; its port is ignored)
 * and port. *why, if not
 * NULL, gets the deciding rule ("--deny 10.0.0.0/8", "built-in deny
 * 127.0.0.0/8 (loopback)") or "no rule matched". With addr NULL the
 * answer is NEED_ADDRESS when an address rule could decide. */
enum policy_verdict policy_check(const struct policy *p, const char *name,
    const struct sockaddr *addr, uint16_t port, const char **why);

#endif
