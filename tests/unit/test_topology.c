/* test_topology.c - the topology priority file: the example's ranking, default ranking by
 * kind, reverse routes, and one broken document per check with the exact message and line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include <tfab/topology.h>

static tfab_topology_t *parse_ok(const char *doc)
{
    tfab_topology_t *t = NULL;
    char             err[512] = "";
    tfab_status_t    st       = tfab_topology_parse(doc, strlen(doc), "t.yaml", &t, err, sizeof(err));
    if (st != TFAB_OK)
        fail_msg("unexpected error: %s", err);
    return t;
}

static void parse_bad(const char *doc, const char *want)
{
    tfab_topology_t *t = NULL;
    char             err[512] = "";
    assert_int_equal(tfab_topology_parse(doc, strlen(doc), "t.yaml", &t, err, sizeof(err)),
                     TFAB_ERR_INVALID);
    assert_null(t);
    if (strcmp(err, want) != 0)
        fail_msg("error\n  got:  %s\n  want: %s", err, want);
}

static void test_example_file(void **state)
{
    tfab_topology_t *t;
    char             err[512];
    assert_int_equal(tfab_topology_load(TFAB_SOURCE "/config/topology.example.yaml", &t, err, sizeof(err)),
                     TFAB_OK);
    assert_int_equal(tfab_topology_n_hosts(t), 3);
    tfab_topology_path_t p[8];
    assert_int_equal(tfab_topology_rank(t, "node0", "node1", p, 8), 2);
    assert_string_equal(p[0].local->name, "ib0");
    assert_string_equal(p[0].local->device, "mlx5_0");
    assert_string_equal(p[0].remote->address, "10.10.0.2");
    assert_string_equal(p[1].local->address, "192.168.1.10:7400");
    assert_int_equal(tfab_topology_rank(t, "node1", "node0", p, 8), 2); /* the reverse route */
    assert_string_equal(p[0].local->address, "10.10.0.2");
    assert_int_equal(tfab_topology_rank(t, "node2", "node0", p, 8), 1);
    assert_string_equal(p[0].local->name, "eth0");
    assert_int_equal(tfab_topology_rank(t, "node0", "nobody", p, 8), 0);
    const tfab_topology_host_t *h = tfab_topology_find_host(t, "node0");
    assert_int_equal(h->links[1].gid_index, 3);
    assert_int_equal(h->links[0].gid_index, -1);
    assert_int_equal(h->links[0].port, 1);
    tfab_topology_free(t);
}

static void test_default_ranking(void **state)
{
    /* no route: shared networks, verbs first whatever the listing order */
    tfab_topology_t *t = parse_ok("hosts:\n"
                                  "  - name: a\n"
                                  "    links:\n"
                                  "      - {name: eth, kind: tcp, address: '1.1.1.1:1'}\n"
                                  "      - {name: only_a, kind: tcp, address: '1.1.1.1:2'}\n"
                                  "      - {name: ib, kind: verbs, device: rxe0}\n"
                                  "  - name: b\n"
                                  "    links:\n"
                                  "      - {name: ib, kind: verbs, device: rxe0}\n"
                                  "      - {name: eth, kind: tcp, address: '1.1.1.2:1'}\n");
    tfab_topology_path_t p[8];
    assert_int_equal(tfab_topology_rank(t, "a", "b", p, 8), 2);
    assert_string_equal(p[0].local->name, "ib");
    assert_string_equal(p[1].local->name, "eth");
    assert_int_equal(tfab_topology_rank(t, "a", "b", p, 1), 2); /* count even when out is short */
    tfab_topology_free(t);
}

#define HOSTS "hosts:\n  - name: a\n    links:\n      - {name: e, kind: tcp, address: '1.1.1.1:1'}\n" \
              "  - name: b\n    links:\n      - {name: e, kind: tcp, address: '1.1.1.2:1'}\n" \
              "      - {name: v, kind: verbs, device: rxe0}\n"

static void test_errors(void **state)
{
    parse_bad("", "t.yaml:1: the file is empty");
    parse_bad("hosts: [\n", "t.yaml:2: did not find expected node content while parsing a flow node");
    parse_bad("version: 2\n" HOSTS, "t.yaml:1: topology version 2 is not supported (this tfab reads 1)");
    parse_bad("versoin: 1\n", "t.yaml:1: unknown key 'versoin' in the topology (known: version hosts routes )");
    parse_bad("version: 1\n", "t.yaml:1: no 'hosts' given");
    parse_bad("hosts:\n  - name: a\n    links:\n      - {name: e, kind: udp, address: 'x:1'}\n",
              "t.yaml:4: 'kind' must be verbs or tcp");
    parse_bad("hosts:\n  - name: a\n    links:\n      - {name: e, kind: tcp, address: '1.1.1.1'}\n",
              "t.yaml:4: tcp link 'e' needs an 'address' of the form ip:port");
    parse_bad("hosts:\n  - name: a\n    links:\n      - {name: e, kind: verbs}\n",
              "t.yaml:4: verbs link 'e' needs a 'device' (e.g. mlx5_0)");
    parse_bad("hosts:\n  - name: a\n    links:\n      - {name: e, kind: verbs, device: d, port: 0}\n",
              "t.yaml:4: 'port' must be an integer from 1 to 255");
    parse_bad("hosts:\n  - name: a\n    links:\n      - {name: e, kind: verbs, device: d, porrt: 1}\n",
              "t.yaml:4: unknown key 'porrt' in a link (known: name kind device port gid_index address )");
    parse_bad("hosts:\n  - name: a\n    links:\n      - {name: e, kind: tcp, address: '1.1.1.1:1'}\n"
              "      - {name: e, kind: tcp, address: '1.1.1.1:2'}\n",
              "t.yaml:5: link 'e' is defined twice on this host (first on line 4)");
    parse_bad(HOSTS "  - name: a\n    links:\n      - {name: e, kind: tcp, address: '1.1.1.3:1'}\n",
              "t.yaml:9: host 'a' is defined twice (first on line 2)");
    parse_bad(HOSTS "routes:\n  - {from: a, to: c, links: [e]}\n", "t.yaml:10: route to unknown host 'c'");
    parse_bad(HOSTS "routes:\n  - {from: a, to: b, links: [v]}\n",
              "t.yaml:10: route a -> b ranks link 'v', which host 'a' does not have");
    parse_bad(HOSTS "routes:\n  - {from: a, to: b, links: [e, e]}\n",
              "t.yaml:10: route a -> b ranks link 'e' twice");
    parse_bad(HOSTS "routes:\n  - {from: a, to: b, links: [e]}\n  - {from: a, to: b, links: [e]}\n",
              "t.yaml:11: route a -> b given twice (first on line 10)");
    parse_bad(HOSTS "routes:\n  - {from: a, to: a, links: [e]}\n", "t.yaml:10: route from 'a' to itself");
    parse_bad(HOSTS "routes:\n  - {from: a, to: b, links: [e], links: [e]}\n",
              "t.yaml:10: 'links' given twice for this route");
    parse_bad("hosts:\n  - name: a\n    links: [{name: e, kind: tcp, address: '1.1.1.1:1'}]\n"
              "    links: [{name: f, kind: tcp, address: '1.1.1.1:2'}]\n",
              "t.yaml:4: 'links' given twice for this host");
    parse_bad(HOSTS "routes:\n  - {from: a, links: [e]}\n", "t.yaml:10: a route needs 'from', 'to' and 'links'");
    /* a link name of the same network must be the same kind on both ends */
    parse_bad("hosts:\n  - name: a\n    links:\n      - {name: n, kind: tcp, address: '1.1.1.1:1'}\n"
              "  - name: b\n    links:\n      - {name: n, kind: verbs, device: d}\n"
              "routes:\n  - {from: a, to: b, links: [n]}\n",
              "t.yaml:9: link 'n' is tcp on 'a' but verbs on 'b'");
    tfab_topology_t *t;
    char             err[256];
    assert_int_equal(tfab_topology_load("/nonexistent/topo.yaml", &t, err, sizeof(err)), TFAB_ERR_IO);
    assert_string_equal(err, "/nonexistent/topo.yaml: cannot open: No such file or directory");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example_file),
        cmocka_unit_test(test_default_ranking),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests_name("topology", tests, NULL, NULL);
}
