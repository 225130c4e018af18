/* test_devinfo.c - GID choice for a peer address (pure: built port tables), status strings,
 * the memlock diagnosis, and the host listing working without any RDMA device. */
#include <setjmp.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <cmocka.h>
#include <tfab/tfab.h>

static tfab_gid_info_t gid(unsigned index, const char *addr, tfab_gid_type_t type)
{
    tfab_gid_info_t g = {.index = index, .type = type};
    assert_int_equal(inet_pton(AF_INET6, addr, g.raw), 1);
    snprintf(g.str, sizeof(g.str), "%s", addr);
    return g;
}

static struct sockaddr_in v4(const char *a)
{
    struct sockaddr_in s = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, a, &s.sin_addr), 1);
    return s;
}

static void test_gid_select(void **state)
{
    /* the layout mlx5/rxe present: link-local v1+v2, then the IPv4-mapped v1+v2 */
    tfab_gid_info_t gids[] = {
        gid(0, "fe80::5054:ff:fe12:3456", TFAB_GID_ROCE_V1),
        gid(1, "fe80::5054:ff:fe12:3456", TFAB_GID_ROCE_V2),
        gid(2, "::ffff:10.99.0.1", TFAB_GID_ROCE_V1),
        gid(3, "::ffff:10.99.0.1", TFAB_GID_ROCE_V2),
        gid(4, "::ffff:10.77.0.9", TFAB_GID_ROCE_V2),
    };
    tfab_port_info_t   port = {.port_num = 1, .n_gids = 5, .gids = gids};
    unsigned           idx  = 99;
    struct sockaddr_in a    = v4("10.99.0.1");
    assert_int_equal(tfab_gid_select(&port, (struct sockaddr *)&a, &idx), TFAB_OK);
    assert_int_equal(idx, 3); /* RoCE v2 preferred over v1 for the same address */
    a = v4("10.77.0.9");
    assert_int_equal(tfab_gid_select(&port, (struct sockaddr *)&a, &idx), TFAB_OK);
    assert_int_equal(idx, 4);
    a   = v4("10.99.0.2");
    idx = 99;
    assert_int_equal(tfab_gid_select(&port, (struct sockaddr *)&a, &idx), TFAB_ERR_NOT_FOUND);
    assert_int_equal(idx, 99);

    /* only v1 present: v1 is taken; the v6 link-local address matches its own GID */
    gids[3].type = TFAB_GID_ROCE_V1;
    a            = v4("10.99.0.1");
    assert_int_equal(tfab_gid_select(&port, (struct sockaddr *)&a, &idx), TFAB_OK);
    assert_int_equal(idx, 2); /* equal rank: lower index */
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "fe80::5054:ff:fe12:3456", &a6.sin6_addr);
    assert_int_equal(tfab_gid_select(&port, (struct sockaddr *)&a6, &idx), TFAB_OK);
    assert_int_equal(idx, 1);
    struct sockaddr bad = {.sa_family = AF_UNIX};
    assert_int_equal(tfab_gid_select(&port, &bad, &idx), TFAB_ERR_INVALID);
}

static void test_status_str(void **state)
{
    assert_string_equal(tfab_status_str(TFAB_OK), "ok");
    assert_string_equal(tfab_status_str(TFAB_ERR_TIMEOUT), "timed out");
    assert_string_equal(tfab_status_str((tfab_status_t)-1000), "unknown status");
    for (int s = TFAB_INPROGRESS; s > TFAB_ERR_LAST; s--)
        assert_string_not_equal(tfab_status_str((tfab_status_t)s), "unknown status");
    assert_int_equal(tfab_status_from_errno(ETIMEDOUT), TFAB_ERR_TIMEOUT);
    assert_int_equal(tfab_status_from_errno(ECONNREFUSED), TFAB_ERR_CONN);
    assert_int_equal(tfab_status_from_errno(ENOMEM), TFAB_ERR_NOMEM);
}

static void test_memlock_fix(void **state)
{
    char              fix[512];
    tfab_sys_limits_t lim = {.memlock_soft = 8ull << 20, .memlock_hard = UINT64_MAX};
    assert_int_equal(tfab_sys_limits_check(&lim, 1ull << 30, fix, sizeof(fix)), TFAB_ERR_PERM);
    assert_non_null(strstr(fix, "ulimit -l unlimited"));
    assert_non_null(strstr(fix, "8.00 MiB"));
    lim.memlock_hard = 64ull << 20;
    assert_int_equal(tfab_sys_limits_check(&lim, 1ull << 30, fix, sizeof(fix)), TFAB_ERR_PERM);
    assert_non_null(strstr(fix, "/etc/security/limits.d"));
    assert_non_null(strstr(fix, "LimitMEMLOCK=infinity"));
    assert_int_equal(tfab_sys_limits_check(&lim, 4ull << 20, fix, sizeof(fix)), TFAB_OK);
    lim.cap_ipc_lock = 1; /* the kernel does not enforce the limit then */
    assert_int_equal(tfab_sys_limits_check(&lim, 1ull << 30, fix, sizeof(fix)), TFAB_OK);
}

static void test_log_level_parse(void **state)
{
    tfab_log_level_t l;
    assert_int_equal(tfab_log_level_parse("debug", &l), TFAB_OK);
    assert_int_equal(l, TFAB_LOG_DEBUG);
    assert_int_equal(tfab_log_level_parse("0", &l), TFAB_OK);
    assert_int_equal(l, TFAB_LOG_ERROR);
    assert_int_equal(tfab_log_level_parse("loud", &l), TFAB_ERR_INVALID);
    assert_int_equal(tfab_log_level_parse("5", &l), TFAB_ERR_INVALID);
}

static char sunk[256];
static void sink(tfab_log_level_t level, const char *module, const char *line, void *arg)
{
    snprintf(sunk, sizeof(sunk), "%d %s %s %s", (int)level, module, line, (const char *)arg);
}

static void test_log_sink(void **state)
{
    tfab_log_set_sink(sink, "x");
    tfab_log_set_level(TFAB_LOG_INFO);
    TFAB_DEBUG("mod", "hidden %d", 1);
    assert_string_equal(sunk, "");
    TFAB_INFO("mod", "shown %d", 2);
    assert_string_equal(sunk, "2 mod shown 2 x");
    tfab_log_set_sink(NULL, NULL);
    tfab_log_set_level(TFAB_LOG_WARN);
}

static void test_netif_has_loopback(void **state)
{
    tfab_netif_info_t *ifs;
    unsigned           n, found = 0;
    assert_int_equal(tfab_netif_list_query(&ifs, &n), TFAB_OK);
    for (unsigned i = 0; i < n; i++) {
        if (!ifs[i].loopback)
            continue;
        found = 1;
        assert_true(ifs[i].up);
        assert_true(ifs[i].mtu >= 1500);
        int has127 = 0;
        for (unsigned a = 0; a < ifs[i].n_addrs; a++)
            has127 |= strcmp(ifs[i].addrs[a], "127.0.0.1/8") == 0;
        assert_true(has127);
    }
    free(ifs);
    assert_true(found);
}

static void test_rdma_list_never_fails(void **state)
{
    tfab_rdma_list_t *list;
    assert_int_equal(tfab_rdma_list_query(&list), TFAB_OK);
    if (list->n_devs == 0)
        assert_true(strlen(list->why) > 0); /* no device: the reason is given */
    for (unsigned d = 0; d < list->n_devs; d++)
        assert_true(list->devs[d].n_ports >= 1);
    tfab_rdma_list_free(list);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gid_select),       cmocka_unit_test(test_status_str),
        cmocka_unit_test(test_memlock_fix),      cmocka_unit_test(test_log_level_parse),
        cmocka_unit_test(test_log_sink),         cmocka_unit_test(test_netif_has_loopback),
        cmocka_unit_test(test_rdma_list_never_fails),
    };
    return cmocka_run_group_tests_name("devinfo", tests, NULL, NULL);
}
