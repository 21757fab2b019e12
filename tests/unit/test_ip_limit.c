/* The per-address connection counter: limits, release, and a table that
 * grows and shrinks (deletion from linear probing) without losing counts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "worker/ip_limit.h"

static struct ip_addr key_of(const char *text)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(text, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, text, &s6->sin6_addr), 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, text, &s4->sin_addr), 1);
    }
    struct ip_addr a;
    ip_limit_key(&ss, &a);
    return a;
}

/* IPv6 clients count by their /64; IPv4 ones, mapped or not, by address. */
static void test_keys(void **state)
{
    (void)state;
    struct ip_addr a = key_of("2001:db8:1:2::1"), b = key_of("2001:db8:1:2:ffff:ffff:ffff:ffff");
    struct ip_addr other = key_of("2001:db8:1:3::1");
    assert_memory_equal(a.b, b.b, 16);
    assert_memory_not_equal(a.b, other.b, 16);
    struct ip_addr v4 = key_of("192.0.2.7"), mapped = key_of("::ffff:192.0.2.7"),
                   v4b = key_of("192.0.2.8");
    assert_memory_equal(v4.b, mapped.b, 16);
    assert_memory_not_equal(v4.b, v4b.b, 16);

    struct ip_limit *l = ip_limit_new();
    assert_non_null(l);
    assert_true(ip_limit_take(l, &a, 2));
    assert_true(ip_limit_take(l, &b, 2));
    assert_false(ip_limit_take(l, &a, 2)); /* a third address of the same /64 */
    assert_true(ip_limit_take(l, &other, 2));
    assert_true(ip_limit_take(l, &v4, 1));
    assert_true(ip_limit_take(l, &v4b, 1));
    assert_false(ip_limit_take(l, &mapped, 1));
    ip_limit_free(l);
}

static struct ip_addr addr(uint32_t n)
{
    struct ip_addr a;
    memset(&a, 0, sizeof a);
    a.b[10] = a.b[11] = 0xff;
    a.b[12] = (uint8_t)(n >> 24);
    a.b[13] = (uint8_t)(n >> 16);
    a.b[14] = (uint8_t)(n >> 8);
    a.b[15] = (uint8_t)n;
    return a;
}

static void test_limit_and_release(void **state)
{
    (void)state;
    struct ip_limit *l = ip_limit_new();
    assert_non_null(l);
    struct ip_addr a = addr(1), b = addr(2);
    for (int i = 0; i < 3; i++) assert_true(ip_limit_take(l, &a, 3));
    assert_false(ip_limit_take(l, &a, 3));
    assert_true(ip_limit_take(l, &b, 3));
    assert_int_equal(ip_limit_count(l, &a), 3);
    ip_limit_release(l, &a);
    assert_int_equal(ip_limit_count(l, &a), 2);
    assert_true(ip_limit_take(l, &a, 3));
    for (int i = 0; i < 3; i++) ip_limit_release(l, &a);
    assert_int_equal(ip_limit_count(l, &a), 0);
    assert_int_equal(ip_limit_count(l, &b), 1);
    ip_limit_free(l);
}

static void test_no_limit_counts_nothing(void **state)
{
    (void)state;
    struct ip_limit *l = ip_limit_new();
    struct ip_addr a = addr(7);
    for (int i = 0; i < 100; i++) assert_true(ip_limit_take(l, &a, 0));
    assert_int_equal(ip_limit_count(l, &a), 0);
    ip_limit_free(l);
}

static void test_many_addresses_grow_and_delete(void **state)
{
    (void)state;
    struct ip_limit *l = ip_limit_new();
    enum { N = 5000 };
    for (uint32_t i = 0; i < N; i++) {
        struct ip_addr a = addr(i * 2654435761u);
        for (uint32_t k = 0; k <= i % 3; k++) assert_true(ip_limit_take(l, &a, 10));
    }
    /* Remove every other address entirely, then check all counts. */
    for (uint32_t i = 0; i < N; i += 2) {
        struct ip_addr a = addr(i * 2654435761u);
        for (uint32_t k = 0; k <= i % 3; k++) ip_limit_release(l, &a);
    }
    for (uint32_t i = 0; i < N; i++) {
        struct ip_addr a = addr(i * 2654435761u);
        assert_int_equal(ip_limit_count(l, &a), i % 2 ? i % 3 + 1 : 0);
    }
    ip_limit_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_limit_and_release),
        cmocka_unit_test(test_no_limit_counts_nothing),
        cmocka_unit_test(test_many_addresses_grow_and_delete),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
