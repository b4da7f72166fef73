/* See shim.h. Compiled with pkg-config's cflags for libdpdk (which -include rte_config.h). */
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_ethdev.h>
#include "shim.h"

/* The Rust side spells these flags out as constants; check they are DPDK's. */
_Static_assert(RTE_MBUF_F_RX_IP_CKSUM_MASK == ((1ULL << 4) | (1ULL << 7)), "rx ip cksum mask");
_Static_assert(RTE_MBUF_F_RX_IP_CKSUM_BAD == (1ULL << 4), "rx ip cksum bad");
_Static_assert(RTE_MBUF_F_RX_IP_CKSUM_GOOD == (1ULL << 7), "rx ip cksum good");
_Static_assert(RTE_MBUF_F_RX_L4_CKSUM_MASK == ((1ULL << 3) | (1ULL << 8)), "rx l4 cksum mask");
_Static_assert(RTE_MBUF_F_RX_L4_CKSUM_BAD == (1ULL << 3), "rx l4 cksum bad");
_Static_assert(RTE_MBUF_F_RX_L4_CKSUM_GOOD == (1ULL << 8), "rx l4 cksum good");
_Static_assert(RTE_MBUF_F_TX_TCP_CKSUM == (1ULL << 52), "tx tcp cksum");
_Static_assert(RTE_MBUF_F_TX_UDP_CKSUM == (3ULL << 52), "tx udp cksum");
_Static_assert(RTE_MBUF_F_TX_IP_CKSUM == (1ULL << 54), "tx ip cksum");
_Static_assert(RTE_MBUF_F_TX_IPV4 == (1ULL << 55), "tx ipv4");
_Static_assert(RTE_ETH_RX_OFFLOAD_IPV4_CKSUM == (1ULL << 1), "rx offload ipv4");
_Static_assert(RTE_ETH_RX_OFFLOAD_UDP_CKSUM == (1ULL << 2), "rx offload udp");
_Static_assert(RTE_ETH_RX_OFFLOAD_TCP_CKSUM == (1ULL << 3), "rx offload tcp");
_Static_assert(RTE_ETH_TX_OFFLOAD_IPV4_CKSUM == (1ULL << 1), "tx offload ipv4");
_Static_assert(RTE_ETH_TX_OFFLOAD_UDP_CKSUM == (1ULL << 2), "tx offload udp");
_Static_assert(RTE_ETH_TX_OFFLOAD_TCP_CKSUM == (1ULL << 3), "tx offload tcp");
_Static_assert(RTE_ETH_TX_OFFLOAD_MULTI_SEGS == (1ULL << 15), "tx offload multi segs");
_Static_assert(RTE_MBUF_DEFAULT_BUF_SIZE == 2048 + 128, "default mbuf size");

uint16_t demi_eth_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
    return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t demi_eth_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
    return rte_eth_tx_burst(port, queue, pkts, n);
}

struct rte_mbuf *demi_pktmbuf_alloc(struct rte_mempool *mp)
{
    return rte_pktmbuf_alloc(mp);
}

int demi_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned int n)
{
    return rte_pktmbuf_alloc_bulk(mp, mbufs, n);
}

void demi_pktmbuf_free(struct rte_mbuf *m)
{
    rte_pktmbuf_free(m);
}

void *demi_pktmbuf_data(const struct rte_mbuf *m)
{
    return rte_pktmbuf_mtod(m, void *);
}

uint16_t demi_pktmbuf_data_len(const struct rte_mbuf *m)
{
    return rte_pktmbuf_data_len(m);
}

uint32_t demi_pktmbuf_pkt_len(const struct rte_mbuf *m)
{
    return rte_pktmbuf_pkt_len(m);
}

uint16_t demi_pktmbuf_nb_segs(const struct rte_mbuf *m)
{
    return m->nb_segs;
}

char *demi_pktmbuf_append(struct rte_mbuf *m, uint16_t len)
{
    return rte_pktmbuf_append(m, len);
}

char *demi_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len)
{
    return rte_pktmbuf_prepend(m, len);
}

uint16_t demi_pktmbuf_tailroom(const struct rte_mbuf *m)
{
    return rte_pktmbuf_tailroom(m);
}

uint64_t demi_pktmbuf_ol_flags(const struct rte_mbuf *m)
{
    return m->ol_flags;
}

void demi_pktmbuf_set_tx_offload(struct rte_mbuf *m, uint64_t ol_flags, uint16_t l2_len, uint16_t l3_len)
{
    m->ol_flags |= ol_flags;
    m->l2_len = l2_len;
    m->l3_len = l3_len;
}

int demi_errno(void)
{
    return rte_errno;
}

unsigned int demi_lcore_id(void)
{
    return rte_lcore_id();
}
