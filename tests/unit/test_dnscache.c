/*
 * test_dnscache.c: the dialer's name cache: hits in any case, expiry at
 * exactly the fixed time, replacement, the name that expires first making
 * room, only IPv4 and IPv6 addresses kept, at most DNSCACHE_MAX_ADDRS.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "dnscache.h"

/* Addresses for a test, from numeric texts. */
struct addrs {
	struct sockaddr_storage ss[DNSCACHE_MAX_ADDRS + 4];
	const struct sockaddr *p[DNSCACHE_MAX_ADDRS + 4];
	socklen_t lens[DNSCACHE_MAX_ADDRS + 4];
	size_t n;
};

/* Appends an IPv4 or IPv6 address given as text. */
static void addr_add(struct addrs *a, const char *text)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)(void *)&a->ss[a->n];
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)
	    &a->ss[a->n];

	memset(&a->ss[a->n], 0, sizeof(a->ss[a->n]));
	if (inet_pton(AF_INET, text, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		a->lens[a->n] = sizeof(*sin);
	} else {
		ck_assert_int_eq(inet_pton(AF_INET6, text, &sin6->sin6_addr),
		    1);
		sin6->sin6_family = AF_INET6;
		a->lens[a->n] = sizeof(*sin6);
	}
	a->p[a->n] = (const struct sockaddr *)&a->ss[a->n];
	a->n++;
}

/* The text of the i-th cached address. */
static const char *addr_text(const struct sockaddr_storage *ss, char *out,
    size_t cap)
{
	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)
		    ss)->sin_addr, out, (socklen_t)cap);
	else
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)
		    (const void *)ss)->sin6_addr, out, (socklen_t)cap);
	return out;
}

START_TEST(test_hit_and_expiry)
{
	struct dnscache *c = dnscache_new(4, 1000);
	struct sockaddr_storage got[DNSCACHE_MAX_ADDRS];
	socklen_t lens[DNSCACHE_MAX_ADDRS];
	struct addrs a = { .n = 0 };
	char text[64];

	addr_add(&a, "192.0.2.1");
	addr_add(&a, "2001:db8::1");
	ck_assert_uint_eq(dnscache_get(c, "example.com", 5000, got, lens,
	    DNSCACHE_MAX_ADDRS), 0);
	dnscache_put(c, "example.com", a.p, a.lens, a.n, 5000);
	ck_assert_uint_eq(dnscache_get(c, "EXAMPLE.com", 5999, got, lens,
	    DNSCACHE_MAX_ADDRS), 2);
	ck_assert_str_eq(addr_text(&got[0], text, sizeof(text)), "192.0.2.1");
	ck_assert_uint_eq(lens[0], sizeof(struct sockaddr_in));
	ck_assert_str_eq(addr_text(&got[1], text, sizeof(text)),
	    "2001:db8::1");
	ck_assert_uint_eq(lens[1], sizeof(struct sockaddr_in6));
	/* Room for one only: the first. */
	ck_assert_uint_eq(dnscache_get(c, "example.com", 5999, got, lens, 1),
	    1);
	/* Other names miss; at exactly the fixed time the name expires. */
	ck_assert_uint_eq(dnscache_get(c, "example.org", 5001, got, lens,
	    DNSCACHE_MAX_ADDRS), 0);
	ck_assert_uint_eq(dnscache_get(c, "example.com", 6000, got, lens,
	    DNSCACHE_MAX_ADDRS), 0);
	/* A new lookup replaces the addresses and the time. */
	a.n = 0;
	addr_add(&a, "198.51.100.7");
	dnscache_put(c, "Example.Com", a.p, a.lens, a.n, 6000);
	ck_assert_uint_eq(dnscache_names(c), 1);
	ck_assert_uint_eq(dnscache_get(c, "example.com", 6999, got, lens,
	    DNSCACHE_MAX_ADDRS), 1);
	ck_assert_str_eq(addr_text(&got[0], text, sizeof(text)),
	    "198.51.100.7");
	dnscache_free(c);
}
END_TEST

START_TEST(test_full_cache_forgets_first_to_expire)
{
	struct dnscache *c = dnscache_new(3, 1000);
	struct sockaddr_storage got[DNSCACHE_MAX_ADDRS];
	socklen_t lens[DNSCACHE_MAX_ADDRS];
	struct addrs a = { .n = 0 };

	addr_add(&a, "192.0.2.1");
	dnscache_put(c, "b.test", a.p, a.lens, a.n, 200);
	dnscache_put(c, "a.test", a.p, a.lens, a.n, 100);
	dnscache_put(c, "c.test", a.p, a.lens, a.n, 300);
	dnscache_put(c, "d.test", a.p, a.lens, a.n, 400);
	ck_assert_uint_eq(dnscache_names(c), 3);
	ck_assert_uint_eq(dnscache_get(c, "a.test", 400, got, lens, 4), 0);
	ck_assert_uint_eq(dnscache_get(c, "b.test", 400, got, lens, 4), 1);
	ck_assert_uint_eq(dnscache_get(c, "c.test", 400, got, lens, 4), 1);
	ck_assert_uint_eq(dnscache_get(c, "d.test", 400, got, lens, 4), 1);
	dnscache_free(c);
}
END_TEST

START_TEST(test_only_inet_addresses_and_a_bounded_number)
{
	struct dnscache *c = dnscache_new(2, 1000);
	struct sockaddr_storage got[DNSCACHE_MAX_ADDRS + 4];
	socklen_t lens[DNSCACHE_MAX_ADDRS + 4];
	struct addrs a = { .n = 0 };
	struct sockaddr_un sun;
	char text[64];
	size_t i;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	a.p[0] = (const struct sockaddr *)&sun;
	a.lens[0] = sizeof(sun);
	a.n = 1;
	for (i = 0; i < DNSCACHE_MAX_ADDRS + 2; i++) {
		snprintf(text, sizeof(text), "192.0.2.%zu", i + 1);
		addr_add(&a, text);
	}
	dnscache_put(c, "many.test", a.p, a.lens, a.n, 0);
	ck_assert_uint_eq(dnscache_get(c, "many.test", 1, got, lens,
	    DNSCACHE_MAX_ADDRS + 4), DNSCACHE_MAX_ADDRS);
	ck_assert_str_eq(addr_text(&got[0], text, sizeof(text)), "192.0.2.1");
	/* Nothing is kept with a zero time. */
	dnscache_free(c);
	c = dnscache_new(2, 0);
	dnscache_put(c, "many.test", a.p, a.lens, a.n, 0);
	ck_assert_uint_eq(dnscache_names(c), 0);
	dnscache_free(c);
	ck_assert_ptr_null(dnscache_new(0, 1000));
}
END_TEST

/* Builds the suite. */
static Suite *dnscache_suite(void)
{
	Suite *s = suite_create("dnscache");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_hit_and_expiry);
	tcase_add_test(tc, test_full_cache_forgets_first_to_expire);
	tcase_add_test(tc, test_only_inet_addresses_and_a_bounded_number);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(dnscache_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
