/* The worker's connection lists: newest at the head, oldest at the tail
 * (what a worker out of descriptors closes first), kept right through
 * removals from anywhere, down to empty and back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "worker/conn.h"
#include "worker/worker.h"

#define N 6

/* Walks the list both ways and checks it holds exactly want[0..n) from
 * the newest to the oldest. */
static void assert_list(const struct conn_list *l, struct conn *const *want, int n)
{
    assert_int_equal(l->count, n);
    int i = 0;
    for (struct conn *c = l->head; c; c = c->next, i++) {
        assert_true(i < n);
        assert_ptr_equal(c, want[i]);
    }
    assert_int_equal(i, n);
    for (struct conn *c = l->tail; c; c = c->prev) {
        i--;
        assert_ptr_equal(c, want[i]);
    }
    assert_int_equal(i, 0);
    if (n == 0) {
        assert_null(l->head);
        assert_null(l->tail);
    }
}

static void test_order_and_removals(void **state)
{
    (void)state;
    struct conn c[N];
    memset(c, 0, sizeof c);
    struct conn_list l = {0};
    assert_list(&l, NULL, 0);

    for (int i = 0; i < N; i++) conn_list_add(&l, &c[i]);
    struct conn *all[N] = {&c[5], &c[4], &c[3], &c[2], &c[1], &c[0]};
    assert_list(&l, all, N);
    assert_ptr_equal(l.tail, &c[0]);

    /* The oldest goes: the next oldest becomes the tail. */
    conn_list_remove(&l, &c[0]);
    struct conn *no_oldest[] = {&c[5], &c[4], &c[3], &c[2], &c[1]};
    assert_list(&l, no_oldest, 5);

    /* The newest, then one in the middle. */
    conn_list_remove(&l, &c[5]);
    conn_list_remove(&l, &c[3]);
    struct conn *rest[] = {&c[4], &c[2], &c[1]};
    assert_list(&l, rest, 3);

    /* Down to one: head and tail are the same; then empty. */
    conn_list_remove(&l, &c[4]);
    conn_list_remove(&l, &c[1]);
    struct conn *one[] = {&c[2]};
    assert_list(&l, one, 1);
    assert_ptr_equal(l.head, l.tail);
    conn_list_remove(&l, &c[2]);
    assert_list(&l, NULL, 0);

    /* Empty again, the list starts over cleanly. */
    conn_list_add(&l, &c[1]);
    conn_list_add(&l, &c[0]);
    struct conn *again[] = {&c[0], &c[1]};
    assert_list(&l, again, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_removals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
