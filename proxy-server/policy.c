/*
 * policy.c: --allow and --deny rules, first match wins.
 */
#include "policy.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define POLICY_NAME_MAX 253

enum rule_kind {
	RULE_ANY,       /* "*" */
	RULE_NET,       /* an address and prefix length */
	RULE_NAME,      /* "example.com" */
	RULE_SUFFIX,    /* "*.example.com": name holds "example.com" */
};

struct policy_rule {
	enum policy_action action;
	enum rule_kind kind;
	int family;                 /* RULE_NET: AF_INET or AF_INET6 */
	uint8_t addr[16];           /* RULE_NET: network, host bits zero */
	unsigned prefix;            /* RULE_NET: prefix length */
	char name[POLICY_NAME_MAX + 1];
	uint16_t port_lo, port_hi;
	char text[POLICY_NAME_MAX + 64]; /* for logs */
};

struct policy {
	struct policy_rule *rules;
	size_t nrules, cap;
	struct policy_rule *builtin;
	size_t nbuiltin;
	bool insecure;
};

/* The insecure-mode denials, in the order they are tried: the special-
 * purpose blocks of RFC 6890 and its updates (IANA's registries) that a
 * public proxy must not reach. The documentation blocks (192.0.2.0/24,
 * 2001:db8::/32, ...) are left out: nothing answers there. */
static const struct {
	const char *net;
	const char *what;
} policy_builtin_nets[] = {
	{ "127.0.0.0/8", "loopback" },
	{ "10.0.0.0/8", "private" },
	{ "172.16.0.0/12", "private" },
	{ "192.168.0.0/16", "private" },
	{ "169.254.0.0/16", "link-local" },
	{ "0.0.0.0/8", "unspecified" },
	{ "255.255.255.255/32", "broadcast" },
	{ "224.0.0.0/4", "multicast" },
	{ "100.64.0.0/10", "shared address space" },
	{ "192.0.0.0/24", "IETF protocol assignments" },
	{ "198.18.0.0/15", "benchmarking" },
	{ "240.0.0.0/4", "reserved" },
	{ "::1/128", "loopback" },
	{ "::/128", "unspecified" },
	{ "fc00::/7", "private" },
	{ "fe80::/10", "link-local" },
	{ "ff00::/8", "multicast" },
	{ "fec0::/10", "site-local" },
	{ "100::/64", "discard-only" },
	/* These carry an IPv4 address inside; a gateway would reach it. */
	{ "64:ff9b::/96", "NAT64" },
	{ "64:ff9b:1::/48", "local NAT64" },
	{ "2002::/16", "6to4" },
	{ "2001::/32", "Teredo" },
	{ "2001:2::/48", "benchmarking" },
};

#define POLICY_NBUILTIN \
	(sizeof(policy_builtin_nets) / sizeof(policy_builtin_nets[0]))

static int policy_parse(struct policy_rule *r, const char *rule, char *err,
    size_t errlen);

/* Creates an empty policy with its built-in rules ready but off. */
struct policy *policy_new(void)
{
	struct policy *p;
	char err[128];
	size_t i;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	if ((p->builtin = calloc(POLICY_NBUILTIN, sizeof(*p->builtin))) ==
	    NULL) {
		free(p);
		return NULL;
	}
	for (i = 0; i < POLICY_NBUILTIN; i++) {
		struct policy_rule *r = &p->builtin[i];

		if (policy_parse(r, policy_builtin_nets[i].net, err,
		    sizeof(err)) != 0) {
			policy_free(p);
			return NULL;
		}
		r->action = POLICY_DENY;
		snprintf(r->text, sizeof(r->text), "built-in deny %s (%s)",
		    policy_builtin_nets[i].net, policy_builtin_nets[i].what);
	}
	p->nbuiltin = POLICY_NBUILTIN;
	return p;
}

/* Frees a policy. */
void policy_free(struct policy *p)
{
	if (p == NULL)
		return;
	free(p->rules);
	free(p->builtin);
	free(p);
}

/* Parses PORTS ("443" or "8000-8999") into r. */
static int policy_parse_ports(struct policy_rule *r, const char *s,
    char *err, size_t errlen)
{
	unsigned long lo, hi;
	char *end;

	if (*s == '\0') {
		snprintf(err, errlen, "missing port after ':'");
		return -1;
	}
	if (!isdigit((unsigned char)*s))
		goto bad;
	lo = strtoul(s, &end, 10);
	hi = lo;
	if (*end == '-') {
		if (!isdigit((unsigned char)end[1]))
			goto bad;
		hi = strtoul(end + 1, &end, 10);
	}
	if (*end != '\0' || lo == 0 || lo > 65535 || hi == 0 || hi > 65535)
		goto bad;
	if (lo > hi) {
		snprintf(err, errlen, "bad port range '%s': %lu is above %lu",
		    s, lo, hi);
		return -1;
	}
	r->port_lo = (uint16_t)lo;
	r->port_hi = (uint16_t)hi;
	return 0;
bad:
	snprintf(err, errlen, "bad port '%s': expected a port from 1 to "
	    "65535 or a range LO-HI", s);
	return -1;
}

/* Parses the prefix length after '/' for a family. */
static int policy_parse_prefix(struct policy_rule *r, const char *s,
    char *err, size_t errlen)
{
	unsigned max = r->family == AF_INET ? 32 : 128;
	unsigned long n;
	char *end;

	if (*s == '\0') {
		snprintf(err, errlen, "missing prefix length after '/'");
		return -1;
	}
	n = strtoul(s, &end, 10);
	if (!isdigit((unsigned char)*s) || *end != '\0' || strlen(s) > 3 ||
	    n > max) {
		snprintf(err, errlen, "bad prefix length '/%s': expected 0 to "
		    "%u for %s", s, max, r->family == AF_INET ? "IPv4" :
		    "IPv6");
		return -1;
	}
	r->prefix = (unsigned)n;
	return 0;
}

/* Clears the host bits of a network rule. */
static void policy_mask(struct policy_rule *r)
{
	size_t len = r->family == AF_INET ? 4 : 16, i;
	unsigned bits = r->prefix;

	for (i = 0; i < len; i++) {
		if (bits >= 8) {
			bits -= 8;
			continue;
		}
		r->addr[i] &= (uint8_t)(0xff00u >> bits);
		bits = 0;
	}
}

/* Parses "ADDR" or "ADDR/LEN" of a family into a network rule: -1 for a
 * bad address, -2 for a bad prefix length. */
static int policy_parse_net(struct policy_rule *r, int family,
    const char *text, size_t len, char *err, size_t errlen)
{
	char buf[INET6_ADDRSTRLEN + 8];
	char *slash;

	r->kind = RULE_NET;
	r->family = family;
	if (len >= sizeof(buf)) {
		snprintf(err, errlen, "'%.*s...' is not an %s address", 16,
		    text, family == AF_INET ? "IPv4" : "IPv6");
		return -1;
	}
	memcpy(buf, text, len);
	buf[len] = '\0';
	if ((slash = strchr(buf, '/')) != NULL)
		*slash = '\0';
	if (inet_pton(family, buf, r->addr) != 1) {
		snprintf(err, errlen, "'%s' is not an %s address", buf,
		    family == AF_INET ? "IPv4" : "IPv6");
		return -1;
	}
	r->prefix = family == AF_INET ? 32 : 128;
	if (slash != NULL && policy_parse_prefix(r, slash + 1, err, errlen) !=
	    0)
		return -2;
	policy_mask(r);
	return 0;
}

/* Checks a host name: dot-separated labels of letters, digits, '-' and
 * '_', one trailing dot allowed, the last label not all digits. Copies it
 * without the trailing dot. */
static int policy_parse_name(struct policy_rule *r, const char *text,
    size_t len, char *err, size_t errlen)
{
	size_t i, label = 0;
	bool digits = true;

	if (len > 0 && text[len - 1] == '.')
		len--;
	if (len == 0 || len > POLICY_NAME_MAX)
		goto bad;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];

		if (c == '.') {
			if (label == 0)
				goto bad;
			label = 0;
			digits = true;
			continue;
		}
		if (!isalnum(c) && c != '-' && c != '_')
			goto bad;
		if (!isdigit(c))
			digits = false;
		if (++label > 63)
			goto bad;
	}
	if (label == 0 || digits)
		goto bad;
	memcpy(r->name, text, len);
	r->name[len] = '\0';
	return 0;
bad:
	snprintf(err, errlen, "'%.*s' is not an IP address or a host name",
	    (int)(len > 300 ? 300 : len), text);
	return -1;
}

/* Parses "[ADDR6]", "[ADDR6]/LEN", each optionally with ":PORTS". */
static int policy_parse_bracketed(struct policy_rule *r, const char *rule,
    char *err, size_t errlen)
{
	char net[INET6_ADDRSTRLEN + 8];
	const char *close, *after;

	if ((close = strchr(rule, ']')) == NULL) {
		snprintf(err, errlen, "missing ']'");
		return -1;
	}
	if (memchr(rule, '/', (size_t)(close - rule)) != NULL) {
		snprintf(err, errlen, "put the prefix length after ']': "
		    "[ADDR]/LEN");
		return -1;
	}
	after = close + 1;
	if (*after == '/')
		after += strcspn(after, ":");
	if (*after != '\0' && *after != ':') {
		snprintf(err, errlen, "unexpected '%s' after ']'", close + 1);
		return -1;
	}
	/* The address and prefix without the brackets. */
	snprintf(net, sizeof(net), "%.*s%.*s", (int)(close - rule - 1),
	    rule + 1, (int)(after - close - 1), close + 1);
	if (policy_parse_net(r, AF_INET6, net, strlen(net), err, errlen) != 0)
		return -1;
	return *after == ':' ? policy_parse_ports(r, after + 1, err, errlen) :
	    0;
}

/* Parses a bare IPv6 address or network (no port can follow). */
static int policy_parse_bare6(struct policy_rule *r, const char *rule,
    char *err, size_t errlen)
{
	const char *slash = strchr(rule, '/');
	int rc;

	rc = policy_parse_net(r, AF_INET6, rule, strlen(rule), err, errlen);
	if (rc == -1 || (rc == -2 && strchr(slash, ':') != NULL)) {
		snprintf(err, errlen, "'%s' is not an IPv6 address (to add a "
		    "port, write [ADDR]:PORT or [ADDR]/LEN:PORT)", rule);
		return -1;
	}
	return rc;
}

/* Parses one rule's target and ports into r (action and text aside). */
static int policy_parse(struct policy_rule *r, const char *rule, char *err,
    size_t errlen)
{
	const char *colon;
	size_t len;

	memset(r, 0, sizeof(*r));
	r->port_lo = 1;
	r->port_hi = 65535;
	if (*rule == '\0') {
		snprintf(err, errlen, "empty rule");
		return -1;
	}
	if (*rule == '[')
		return policy_parse_bracketed(r, rule, err, errlen);
	colon = strchr(rule, ':');
	if (colon != NULL && strchr(colon + 1, ':') != NULL)
		return policy_parse_bare6(r, rule, err, errlen);
	len = colon != NULL ? (size_t)(colon - rule) : strlen(rule);
	if (len == 0) {
		snprintf(err, errlen, "missing address or name before ':'");
		return -1;
	}
	if (len == 1 && rule[0] == '*') {
		r->kind = RULE_ANY;
	} else if (memchr(rule, '/', len) != NULL ||
	    strspn(rule, "0123456789.") == len) {
		if (policy_parse_net(r, AF_INET, rule, len, err, errlen) != 0)
			return -1;
	} else if (len == 2 && rule[0] == '*' && rule[1] == '.') {
		snprintf(err, errlen, "missing domain after '*.'");
		return -1;
	} else if (len > 2 && rule[0] == '*' && rule[1] == '.') {
		r->kind = RULE_SUFFIX;
		if (policy_parse_name(r, rule + 2, len - 2, err, errlen) != 0)
			return -1;
	} else if (memchr(rule, '*', len) != NULL) {
		snprintf(err, errlen, "'*' only stands alone or starts "
		    "'*.DOMAIN'");
		return -1;
	} else {
		r->kind = RULE_NAME;
		if (policy_parse_name(r, rule, len, err, errlen) != 0)
			return -1;
	}
	return colon != NULL ? policy_parse_ports(r, colon + 1, err, errlen) :
	    0;
}

/* Parses a rule and appends it. */
int policy_add(struct policy *p, enum policy_action action, const char *rule,
    char *err, size_t errlen)
{
	struct policy_rule r, *grown;
	size_t cap;

	if (policy_parse(&r, rule, err, errlen) != 0)
		return -1;
	r.action = action;
	snprintf(r.text, sizeof(r.text), "%s %s", action == POLICY_ALLOW ?
	    "--allow" : "--deny", rule);
	if (p->nrules == p->cap) {
		cap = p->cap ? p->cap * 2 : 8;
		if ((grown = realloc(p->rules, cap * sizeof(*grown))) == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		p->rules = grown;
		p->cap = cap;
	}
	p->rules[p->nrules++] = r;
	return 0;
}

/* Turns the insecure-mode denials on or off. */
void policy_set_insecure(struct policy *p, bool insecure)
{
	p->insecure = insecure;
}

/* Number of user rules. */
size_t policy_rules(const struct policy *p)
{
	return p->nrules;
}

/* Whether name is the rule's name, or under it for a suffix rule. */
static bool policy_name_matches(const struct policy_rule *r, const char *name)
{
	size_t len = strlen(name), rlen = strlen(r->name);

	if (len > 0 && name[len - 1] == '.')
		len--;
	if (r->kind == RULE_NAME)
		return len == rlen && strncasecmp(name, r->name, len) == 0;
	return len > rlen + 1 && name[len - rlen - 1] == '.' &&
	    strncasecmp(name + len - rlen, r->name, rlen) == 0;
}

/* Whether an address (family and bytes) lies in the rule's network. */
static bool policy_net_matches(const struct policy_rule *r, int family,
    const uint8_t *addr)
{
	unsigned bits = r->prefix, i;

	if (family != r->family)
		return false;
	for (i = 0; bits >= 8; i++, bits -= 8)
		if (addr[i] != r->addr[i])
			return false;
	return bits == 0 || (addr[i] & (uint8_t)(0xff00u >> bits)) ==
	    r->addr[i];
}

/* Walks rules; returns 1 with a verdict when one decided, else 0. */
static int policy_walk(const struct policy_rule *rules, size_t n,
    const char *name, int family, const uint8_t *addr, uint16_t port,
    enum policy_verdict *verdict, const char **why)
{
	const struct policy_rule *r;
	size_t i;

	for (i = 0; i < n; i++) {
		r = &rules[i];
		if (port < r->port_lo || port > r->port_hi)
			continue;
		switch (r->kind) {
		case RULE_ANY:
			break;
		case RULE_NAME:
		case RULE_SUFFIX:
			if (name == NULL || !policy_name_matches(r, name))
				continue;
			break;
		case RULE_NET:
			if (addr == NULL) {
				*verdict = POLICY_VERDICT_NEED_ADDRESS;
				*why = r->text;
				return 1;
			}
			if (!policy_net_matches(r, family, addr))
				continue;
			break;
		}
		*verdict = r->action == POLICY_ALLOW ? POLICY_VERDICT_ALLOW :
		    POLICY_VERDICT_DENY;
		*why = r->text;
		return 1;
	}
	return 0;
}

/* Decides for a destination; the first matching rule wins. */
enum policy_verdict policy_check(const struct policy *p, const char *name,
    const struct sockaddr *sa, uint16_t port, const char **why)
{
	enum policy_verdict verdict = POLICY_VERDICT_ALLOW;
	const uint8_t *addr = NULL;
	const char *rule = "no rule matched";
	int family = 0;

	if (sa != NULL && sa->sa_family == AF_INET) {
		family = AF_INET;
		addr = (const uint8_t *)
		    &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
	} else if (sa != NULL && sa->sa_family == AF_INET6) {
		family = AF_INET6;
		addr = ((const struct sockaddr_in6 *)(const void *)sa)->
		    sin6_addr.s6_addr;
		if (IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)
		    (const void *)addr)) {
			family = AF_INET;
			addr += 12;
		}
	}
	if (!policy_walk(p->rules, p->nrules, name, family, addr, port,
	    &verdict, &rule) && p->insecure)
		policy_walk(p->builtin, p->nbuiltin, name, family, addr, port,
		    &verdict, &rule);
	if (why != NULL)
		*why = rule;
	return verdict;
}
