/*
 * demi's C shim over DPDK: DPDK defines its fast-path functions `static inline` in
 * its headers, so they have no symbol to link against. Each `demi_*` function here
 * wraps one of them (or reads a field whose C layout bindgen names awkwardly), with
 * the same contract as the DPDK function it names.
 */
#ifndef DEMI_DPDK_SHIM_H
#define DEMI_DPDK_SHIM_H

#include <stdint.h>

struct rte_mbuf;
struct rte_mempool;

/* rte_eth_rx_burst / rte_eth_tx_burst. */
uint16_t demi_eth_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t demi_eth_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);

/* rte_pktmbuf_alloc, rte_pktmbuf_alloc_bulk (0 on success, all or nothing), rte_pktmbuf_free. */
struct rte_mbuf *demi_pktmbuf_alloc(struct rte_mempool *mp);
int demi_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned int n);
void demi_pktmbuf_free(struct rte_mbuf *m);

/* rte_pktmbuf_mtod(m, void *): the first data byte of the first segment. */
void *demi_pktmbuf_data(const struct rte_mbuf *m);
/* Data length of this segment, length of the whole packet, number of segments. */
uint16_t demi_pktmbuf_data_len(const struct rte_mbuf *m);
uint32_t demi_pktmbuf_pkt_len(const struct rte_mbuf *m);
uint16_t demi_pktmbuf_nb_segs(const struct rte_mbuf *m);
/* rte_pktmbuf_append / rte_pktmbuf_prepend (NULL when there is no room). */
char *demi_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
char *demi_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
/* rte_pktmbuf_tailroom. */
uint16_t demi_pktmbuf_tailroom(const struct rte_mbuf *m);

/* m->ol_flags. */
uint64_t demi_pktmbuf_ol_flags(const struct rte_mbuf *m);
/* Requests checksum offload on a packet to send: sets m->ol_flags, l2_len, l3_len. */
void demi_pktmbuf_set_tx_offload(struct rte_mbuf *m, uint64_t ol_flags, uint16_t l2_len, uint16_t l3_len);

/* rte_errno of the calling thread. */
int demi_errno(void);
/* rte_lcore_id(): the calling thread's lcore (UINT32_MAX for a non-EAL thread). */
unsigned int demi_lcore_id(void);

#endif
