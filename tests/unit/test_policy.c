/*
 * test_policy.c: --allow/--deny rules: parsing, matching, first match
 * wins, ports, names, networks, and the insecure-mode built-ins.
 */
#include <check.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "policy.h"

/* Fills a socket address from a numeric IPv4 or IPv6 text. */
static const struct sockaddr *addr_of(const char *text,
    struct sockaddr_storage *ss)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)(void *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, text, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
	} else {
		ck_assert_int_eq(inet_pton(AF_INET6, text, &sin6->sin6_addr),
		    1);
		sin6->sin6_family = AF_INET6;
	}
	return (const struct sockaddr *)ss;
}

/* Verdict for an address destination. */
static enum policy_verdict check_addr(const struct policy *p,
    const char *addr, uint16_t port)
{
	struct sockaddr_storage ss;

	return policy_check(p, NULL, addr_of(addr, &ss), port, NULL);
}

/* Verdict for a name destination that resolved to addr (NULL: before). */
static enum policy_verdict check_name(const struct policy *p,
    const char *name, const char *addr, uint16_t port)
{
	struct sockaddr_storage ss;

	return policy_check(p, name, addr ? addr_of(addr, &ss) : NULL, port,
	    NULL);
}

/* Adds a rule that must parse. */
static void add(struct policy *p, enum policy_action action,
    const char *rule)
{
	char err[256] = "";

	ck_assert_msg(policy_add(p, action, rule, err, sizeof(err)) == 0,
	    "rule '%s': %s", rule, err);
}

/* Parses a rule that must fail with exactly the message want. */
static void bad(const char *rule, const char *want)
{
	struct policy *p = policy_new();
	char err[256] = "";

	ck_assert_int_eq(policy_add(p, POLICY_DENY, rule, err, sizeof(err)),
	    -1);
	ck_assert_str_eq(err, want);
	ck_assert_uint_eq(policy_rules(p), 0);
	policy_free(p);
}

START_TEST(test_parse_good)
{
	static const char *const good[] = {
		"1.2.3.4", "1.2.3.0/24", "0.0.0.0/0", "10.0.0.0/8:22",
		"192.0.2.1:1-1024", "2001:db8::/32", "::1", "::/0",
		"[2001:db8::1]", "[2001:db8::]/32", "[2001:db8::]/32:443",
		"[::1]:80-81", "example.com", "Example.COM.", "*.example.com",
		"*.example.com:443", "*", "*:25", "a-b_c.d-e", "x.y:65535",
		"::ffff:127.0.0.1", "10.1.2.3/8",
	};
	struct policy *p = policy_new();
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		add(p, POLICY_ALLOW, good[i]);
	ck_assert_uint_eq(policy_rules(p), sizeof(good) / sizeof(good[0]));
	policy_free(p);
}
END_TEST

START_TEST(test_parse_bad)
{
	bad("", "empty rule");
	bad("x/99", "'x' is not an IPv4 address");
	bad("10.0.0.0/99", "bad prefix length '/99': expected 0 to 32 for "
	    "IPv4");
	bad("10.0.0.0/", "missing prefix length after '/'");
	bad("10.0.0.0/8x", "bad prefix length '/8x': expected 0 to 32 for "
	    "IPv4");
	bad("1.2.3", "'1.2.3' is not an IPv4 address");
	bad("256.1.1.1", "'256.1.1.1' is not an IPv4 address");
	bad("[2001:db8::]/129", "bad prefix length '/129': expected 0 to 128 "
	    "for IPv6");
	bad("2001:db8::/129", "bad prefix length '/129': expected 0 to 128 "
	    "for IPv6");
	bad("[2001:db8::", "missing ']'");
	bad("[2001:db8::/32]", "put the prefix length after ']': [ADDR]/LEN");
	bad("[2001:db8::]x", "unexpected 'x' after ']'");
	bad("[1.2.3.4]:80", "'1.2.3.4' is not an IPv6 address");
	bad("[nothex::1]", "'nothex::1' is not an IPv6 address");
	bad("2001:db8::/32:443", "'2001:db8::/32:443' is not an IPv6 address "
	    "(to add a port, write [ADDR]:PORT or [ADDR]/LEN:PORT)");
	bad("gg::1", "'gg::1' is not an IPv6 address (to add a port, write "
	    "[ADDR]:PORT or [ADDR]/LEN:PORT)");
	bad("example.com:", "missing port after ':'");
	bad(":80", "missing address or name before ':'");
	bad("example.com:0", "bad port '0': expected a port from 1 to 65535 "
	    "or a range LO-HI");
	bad("example.com:65536", "bad port '65536': expected a port from 1 to "
	    "65535 or a range LO-HI");
	bad("example.com:http", "bad port 'http': expected a port from 1 to "
	    "65535 or a range LO-HI");
	bad("example.com:80-", "bad port '80-': expected a port from 1 to "
	    "65535 or a range LO-HI");
	bad("example.com:-80", "bad port '-80': expected a port from 1 to "
	    "65535 or a range LO-HI");
	bad("example.com:90-80", "bad port range '90-80': 90 is above 80");
	bad("[::1]:", "missing port after ':'");
	bad("exa mple.com", "'exa mple.com' is not an IP address or a host "
	    "name");
	bad("a..b", "'a..b' is not an IP address or a host name");
	bad(".a", "'.a' is not an IP address or a host name");
	bad("a.123", "'a.123' is not an IP address or a host name");
	bad("*.", "missing domain after '*.'");
	bad("*.:80", "missing domain after '*.'");
	bad("*.*.example.com", "'*.example.com' is not an IP address or a host "
	    "name");
	bad("foo*.example.com", "'*' only stands alone or starts '*.DOMAIN'");
	bad("**", "'*' only stands alone or starts '*.DOMAIN'");
}
END_TEST

START_TEST(test_default_allows)
{
	struct policy *p = policy_new();
	const char *why = NULL;

	ck_assert_int_eq(check_addr(p, "127.0.0.1", 22), POLICY_VERDICT_ALLOW);
	ck_assert_int_eq(check_name(p, "example.com", NULL, 80),
	    POLICY_VERDICT_ALLOW);
	ck_assert_int_eq(policy_check(p, "x.test", NULL, 1, &why),
	    POLICY_VERDICT_ALLOW);
	ck_assert_str_eq(why, "no rule matched");
	policy_free(p);
}
END_TEST

START_TEST(test_first_match_wins)
{
	struct policy *p = policy_new();
	struct sockaddr_storage ss;
	const char *why = NULL;

	add(p, POLICY_ALLOW, "10.1.0.0/16");
	add(p, POLICY_DENY, "10.0.0.0/8");
	add(p, POLICY_ALLOW, "10.2.3.4");
	ck_assert_int_eq(check_addr(p, "10.1.2.3", 80), POLICY_VERDICT_ALLOW);
	ck_assert_int_eq(check_addr(p, "10.2.3.4", 80), POLICY_VERDICT_DENY);
	ck_assert_int_eq(check_addr(p, "11.0.0.1", 80), POLICY_VERDICT_ALLOW);
	ck_assert_int_eq(policy_check(p, NULL, NULL, 80, &why),
	    POLICY_VERDICT_NEED_ADDRESS);
	ck_assert_int_eq(policy_check(p, NULL, addr_of("10.9.9.9", &ss), 80,
	    &why), POLICY_VERDICT_DENY);
	ck_assert_str_eq(why, "--deny 10.0.0.0/8");
	policy_free(p);
}
END_TEST

START_TEST(test_ports)
{
	struct policy *p = policy_new();

	add(p, POLICY_ALLOW, "*:443");
	add(p, POLICY_ALLOW, "example.com:8000-8010");
	add(p, POLICY_DENY, "*");
	ck_assert_int_eq(check_addr(p, "192.0.2.1", 443), POLICY_VERDICT_ALLOW);
	ck_assert_int_eq(check_addr(p, "192.0.2.1", 444), POLICY_VERDICT_DENY);
	ck_assert_int_eq(check_name(p, "example.com", NULL, 7999),
	    POLICY_VERDICT_DENY);
	ck_assert_int_eq(check_name(p, "example.com", NULL, 8000),
	    POLICY_VERDICT_ALLOW);
	ck_assert_int_eq(check_name(p, "example.com", NULL, 8010),
	    POLICY_VERDICT_ALLOW);
	ck_assert_int_eq(check_name(p, "example.com", NULL, 8011),
	    POLICY_VERDICT_DENY);
	ck_assert_int_eq(check_name(p, "other.org", NULL, 443),
	    POLICY_VERDICT_ALLOW);
	policy_free(p);
}
END_TEST

START_TEST(test_port_edges)
{
	struct policy *p = policy_new();

	add(p, POLICY_DENY, "192.0.2.0/24:1");
	add(p, POLICY_DENY, "[2001:db8::]/32:65535");
	add(p, POLICY_DENY, "198.51.100.7:1-65535");
	ck_assert_int_eq(check_addr(p, "192.0.2.9", 1), POLICY_VERDICT_DENY);
	ck_assert_int_eq(check_addr(p, "192.0.2.9", 2), POLICY_VERDICT_ALLOW);
	ck_assert_int_eq(check_addr(p, "2001:db8::5", 65535),
	    POLICY_VERDICT_DENY);
	ck_assert_int_eq(check_addr(p, "2001:db8::5", 65534),
	    POLICY_VERDICT_ALLOW);
	ck_assert_int_eq(check_addr(p, "198.51.100.7", 1), POLICY_VERDICT_DENY);
	ck_assert_int_eq(check_addr(p, "198.51.100.7", 65535),
	    POLICY_VERDICT_DENY);
	policy_free(p);
}
END_TEST

START_TEST(test_names)
{
	struct policy *p = policy_new();
	const char *why = NULL;

	add(p, POLICY_DENY, "*.example.com");
	add(p, POLICY_DENY, "Exact.Test.");
	ck_assert_int_eq(check_name(p, "example.com", NULL, 80),
	    POLICY_VERDICT_ALLOW);
	ck_assert_int_eq(check_name(p, "www.example.com", NULL, 80),
	    POLICY_VERDICT_DENY);
	ck_assert_int_eq(check_name(p, "a.b.EXAMPLE.com", NULL, 80),
	    POLICY_VERDICT_DENY);
	ck_assert_int_eq(check_name(p, "www.example.com.", NULL, 80),
	    POLICY_VERDICT_DENY);
	ck_assert_int_eq(check_name(p, "badexample.com", NULL, 80),
	    POLICY_VERDICT_ALLOW);
	ck_assert_int_eq(check_name(p, ".example.com", NULL, 80),
	    POLICY_VERDICT_ALLOW);
	ck_assert_int_eq(check_name(p, "exact.test", NULL, 80),
	    POLICY_VERDICT_DENY);
	ck_assert_int_eq(check_name(p, "EXACT.TEST.", NULL, 80),
	    POLICY_VERDICT_DENY);
	ck_assert_int_eq(policy_check(p, "sub.exact.test", NULL, 80, &why),
	    POLICY_VERDICT_ALLOW);
	/* A name rule never matches an address target. */
	ck_assert_int_eq(check_addr(p, "192.0.2.1", 80), POLICY_VERDICT_ALLOW);
	policy_free(p);
}
END_TEST

START_TEST(test_name_then_address)
{
	struct policy *p = policy_new();
	const char *why = NULL;

	/* The name rule comes first: it decides for every address. */
	add(p, POLICY_ALLOW, "intranet.test");
	add(p, POLICY_DENY, "10.0.0.0/8");
	add(p, POLICY_DENY, "blocked.test");
	ck_assert_int_eq(check_name(p, "intranet.test", NULL, 80),
	    POLICY_VERDICT_ALLOW);
	ck_assert_int_eq(check_name(p, "intranet.test", "10.1.1.1", 80),
	    POLICY_VERDICT_ALLOW);
	/* Other names need their address: the network rule comes first. */
	ck_assert_int_eq(policy_check(p, "other.test", NULL, 80, &why),
	    POLICY_VERDICT_NEED_ADDRESS);
	ck_assert_str_eq(why, "--deny 10.0.0.0/8");
	ck_assert_int_eq(check_name(p, "other.test", "10.1.1.1", 80),
	    POLICY_VERDICT_DENY);
	ck_assert_int_eq(check_name(p, "other.test", "192.0.2.1", 80),
	    POLICY_VERDICT_ALLOW);
	ck_assert_int_eq(check_name(p, "blocked.test", "192.0.2.1", 80),
	    POLICY_VERDICT_DENY);
	ck_assert_int_eq(check_name(p, "blocked.test", "10.0.0.1", 80),
	    POLICY_VERDICT_DENY);
	policy_free(p);
}
END_TEST

START_TEST(test_ipv4_edges)
{
	struct policy *p = policy_new();

	add(p, POLICY_DENY, "192.0.2.255/32");
	add(p, POLICY_DENY, "198.51.100.128/25");
	add(p, POLICY_ALLOW, "203.0.113.0/31");
	add(p, POLICY_DENY, "0.0.0.0/0");
	ck_assert_int_eq(check_addr(p, "192.0.2.255", 1), POLICY_VERDICT_DENY);
	/* /0 matches every IPv4 address but no IPv6 one. */
	ck_assert_int_eq(check_addr(p, "192.0.2.254", 1), POLICY_VERDICT_DENY);
	ck_assert_int_eq(check_addr(p, "255.255.255.255", 1),
	    POLICY_VERDICT_DENY);
	ck_assert_int_eq(check_addr(p, "203.0.113.0", 1), POLICY_VERDICT_ALLOW);
	ck_assert_int_eq(check_addr(p, "203.0.113.1", 1), POLICY_VERDICT_ALLOW);
	ck_assert_int_eq(check_addr(p, "203.0.113.2", 1), POLICY_VERDICT_DENY);
	ck_assert_int_eq(check_addr(p, "2001:db8::1", 1), POLICY_VERDICT_ALLOW);
	policy_free(p);

	p = policy_new();
	add(p, POLICY_DENY, "198.51.100.128/25");
	add(p, POLICY_DENY, "10.1.2.3/8");
	ck_assert_int_eq(check_addr(p, "198.51.100.127", 1),
	    POLICY_VERDICT_ALLOW);
	ck_assert_int_eq(check_addr(p, "198.51.100.128", 1),
	    POLICY_VERDICT_DENY);
	ck_assert_int_eq(check_addr(p, "198.51.100.255", 1),
	    POLICY_VERDICT_DENY);
	/* Host bits of a network are ignored. */
	ck_assert_int_eq(check_addr(p, "10.200.0.1", 1), POLICY_VERDICT_DENY);
	ck_assert_int_eq(check_addr(p, "11.0.0.0", 1), POLICY_VERDICT_ALLOW);
	/* An IPv4-mapped IPv6 address is matched as IPv4. */
	ck_assert_int_eq(check_addr(p, "::ffff:10.0.0.1", 1),
	    POLICY_VERDICT_DENY);
	ck_assert_int_eq(check_addr(p, "::ffff:11.0.0.1", 1),
	    POLICY_VERDICT_ALLOW);
	policy_free(p);
}
END_TEST

START_TEST(test_ipv6_edges)
{
	struct policy *p = policy_new();

	add(p, POLICY_DENY, "[2001:db8::1]");
	add(p, POLICY_DENY, "2001:db8:0:1::/128");
	add(p, POLICY_DENY, "[2001:db8:ff00::]/40");
	add(p, POLICY_ALLOW, "[2001:db8:8000::]/33:443");
	add(p, POLICY_DENY, "::/0");
	ck_assert_int_eq(check_addr(p, "2001:db8::1", 1), POLICY_VERDICT_DENY);
	ck_assert_int_eq(check_addr(p, "2001:db8:0:1::", 1),
	    POLICY_VERDICT_DENY);
	ck_assert_int_eq(check_addr(p, "2001:db8:ff00::1", 1),
	    POLICY_VERDICT_DENY);
	ck_assert_int_eq(check_addr(p, "2001:db8:ffff:ffff::1", 1),
	    POLICY_VERDICT_DENY);
	ck_assert_int_eq(check_addr(p, "2001:db8:8000::1", 443),
	    POLICY_VERDICT_ALLOW);
	ck_assert_int_eq(check_addr(p, "2001:db8:7fff:ffff::1", 443),
	    POLICY_VERDICT_DENY);
	/* ::/0 matches every IPv6 address but no IPv4 one. */
	ck_assert_int_eq(check_addr(p, "fe80::1", 1), POLICY_VERDICT_DENY);
	ck_assert_int_eq(check_addr(p, "192.0.2.1", 1), POLICY_VERDICT_ALLOW);
	policy_free(p);

	p = policy_new();
	add(p, POLICY_DENY, "[2001:db8::]/127");
	ck_assert_int_eq(check_addr(p, "2001:db8::", 1), POLICY_VERDICT_DENY);
	ck_assert_int_eq(check_addr(p, "2001:db8::1", 1), POLICY_VERDICT_DENY);
	ck_assert_int_eq(check_addr(p, "2001:db8::2", 1),
	    POLICY_VERDICT_ALLOW);
	policy_free(p);
}
END_TEST

START_TEST(test_insecure_defaults)
{
	static const char *const denied[] = {
		"127.0.0.1", "127.255.255.254", "10.0.0.1", "172.16.0.1",
		"172.31.255.255", "192.168.1.1", "169.254.169.254", "0.0.0.0",
		"0.1.2.3", "224.0.0.1", "239.255.255.255", "255.255.255.255",
		"::1", "::", "fc00::1", "fdff::1", "fe80::1", "febf::1",
		"ff02::1", "::ffff:127.0.0.1", "::ffff:192.168.0.1",
		/* RFC 6890 special-purpose blocks that are not public. */
		"100.64.0.1", "100.127.255.255", "192.0.0.1", "192.0.0.255",
		"198.18.0.1", "198.19.255.255", "240.0.0.1", "254.255.255.255",
		"64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b:1::1",
		"64:ff9b:1:ffff::1", "100::1", "100::ffff:ffff:ffff:ffff",
		"2002:7f00:1::1", "2002:ffff::1", "2001::1", "2001:0:ffff::1",
		"2001:2::1", "2001:2:0:ffff::1", "fec0::1", "feff::1",
		"::ffff:100.64.0.1",
	};
	static const char *const allowed[] = {
		"192.0.2.1", "172.15.255.255", "172.32.0.0", "11.0.0.1",
		"169.255.0.1", "223.255.255.255", "2001:db8::1", "fe7f::1",
		"::2", "::ffff:192.0.2.1", "100.63.255.255", "100.128.0.0",
		"192.0.1.255", "192.0.3.0", "198.17.255.255", "198.20.0.0",
		"64:ff9b::1:7f00:1", "64:ff9a::1", "64:ff9b:2::1", "100:0:0:1::1",
		"2003::1", "2001:1::1", "2001:3::1", "2001:2:1::1",
	};
	struct policy *p = policy_new();
	const char *why = NULL;
	struct sockaddr_storage ss;
	size_t i;

	policy_set_insecure(p, true);
	for (i = 0; i < sizeof(denied) / sizeof(denied[0]); i++)
		ck_assert_msg(check_addr(p, denied[i], 80) ==
		    POLICY_VERDICT_DENY, "%s not denied", denied[i]);
	for (i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
		ck_assert_msg(check_addr(p, allowed[i], 80) ==
		    POLICY_VERDICT_ALLOW, "%s not allowed", allowed[i]);
	ck_assert_int_eq(policy_check(p, NULL, addr_of("127.0.0.1", &ss), 80,
	    &why), POLICY_VERDICT_DENY);
	ck_assert_str_eq(why, "built-in deny 127.0.0.0/8 (loopback)");
	/* Before resolution a name cannot be decided yet. */
	ck_assert_int_eq(check_name(p, "localhost", NULL, 80),
	    POLICY_VERDICT_NEED_ADDRESS);
	ck_assert_int_eq(check_name(p, "localhost", "127.0.0.1", 80),
	    POLICY_VERDICT_DENY);

	/* The user's rules come first. */
	add(p, POLICY_ALLOW, "127.0.0.1:8080");
	add(p, POLICY_ALLOW, "[fe80::]/10");
	add(p, POLICY_ALLOW, "printer.lan");
	add(p, POLICY_DENY, "192.0.2.0/24");
	ck_assert_int_eq(check_addr(p, "127.0.0.1", 8080),
	    POLICY_VERDICT_ALLOW);
	ck_assert_int_eq(check_addr(p, "127.0.0.1", 8081),
	    POLICY_VERDICT_DENY);
	ck_assert_int_eq(check_addr(p, "fe80::1", 1), POLICY_VERDICT_ALLOW);
	ck_assert_int_eq(check_name(p, "printer.lan", "192.168.1.5", 631),
	    POLICY_VERDICT_ALLOW);
	ck_assert_int_eq(check_addr(p, "192.0.2.1", 80), POLICY_VERDICT_DENY);

	/* Off again: only the user's rules. */
	policy_set_insecure(p, false);
	ck_assert_int_eq(check_addr(p, "10.0.0.1", 80), POLICY_VERDICT_ALLOW);
	policy_free(p);
}
END_TEST

START_TEST(test_any_rule)
{
	struct policy *p = policy_new();

	add(p, POLICY_DENY, "*:25");
	add(p, POLICY_ALLOW, "*");
	add(p, POLICY_DENY, "10.0.0.0/8");
	ck_assert_int_eq(check_name(p, "mail.test", NULL, 25),
	    POLICY_VERDICT_DENY);
	ck_assert_int_eq(check_addr(p, "::1", 25), POLICY_VERDICT_DENY);
	/* "*" decides before the later network rule, even without address. */
	ck_assert_int_eq(check_name(p, "web.test", NULL, 80),
	    POLICY_VERDICT_ALLOW);
	ck_assert_int_eq(check_addr(p, "10.0.0.1", 80), POLICY_VERDICT_ALLOW);
	policy_free(p);
}
END_TEST

/* The policy suite. */
static Suite *policy_suite(void)
{
	Suite *s = suite_create("policy");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_parse_good);
	tcase_add_test(tc, test_parse_bad);
	tcase_add_test(tc, test_default_allows);
	tcase_add_test(tc, test_first_match_wins);
	tcase_add_test(tc, test_ports);
	tcase_add_test(tc, test_port_edges);
	tcase_add_test(tc, test_names);
	tcase_add_test(tc, test_name_then_address);
	tcase_add_test(tc, test_ipv4_edges);
	tcase_add_test(tc, test_ipv6_edges);
	tcase_add_test(tc, test_insecure_defaults);
	tcase_add_test(tc, test_any_rule);
	suite_add_tcase(s, tc);
	return s;
}

/* Runs the suite. */
int main(void)
{
	SRunner *sr = srunner_create(policy_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
