/* webrtcstack: the TURN channel fast path in the kernel (XDP).
 *
 * SPDX-License-Identifier: MIT OR GPL-2.0  (the kernel needs a GPL-compatible licence for bpf_fib_lookup)
 *
 * Forwards UDP ChannelData (RFC 8656 §12) of established channel bindings, in both directions, for
 * IPv4.  Everything else -- STUN, Send/Data indications, TCP, IPv6, unknown channels, IP options,
 * fragments, padded ChannelData, and any packet that fails a check -- is passed up unchanged to the
 * Python path.  The two maps are written only by the TURN engine (turn/offload/routes.py): an entry
 * exists exactly while the channel is bound *and* its peer has a permission the peer policy allowed.
 *
 *   client -> peer: key (client, server, channel); strip the 4-byte header and re-address the
 *                   datagram from relayed address to peer.
 *   peer -> client: key (peer, relayed address); add the header and re-address it from the
 *                   server's listen address to the client.
 *   client -> client: when a client's peer is another allocation's relayed address here (two
 *                   relay-only clients), both entries are applied in one pass.
 *
 * When the destination is an address of this host (the engine says so in the entry's flags), the
 * rewritten datagram goes up the local stack with XDP_PASS.  Otherwise it leaves by bpf_redirect to
 * the egress the FIB names (XDP_TX when that is the interface it came in on).  If the FIB has no
 * usable answer -- forwarding is off on the interface (the FIB helper answers only where it is on),
 * no neighbour entry yet, a route elsewhere -- the packet goes up to the Python path untouched
 * (which also makes the kernel resolve the neighbour).  The new UDP checksum is 0 (no checksum, allowed for IPv4 by RFC 768); the IPv4
 * header checksum is computed afresh.
 *
 * Built with clang -O2 -target bpf; no headers: the few kernel definitions used are spelled out here.
 */

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;

#define SEC(name) __attribute__((section(name), used))
#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* helper ids (include/uapi/linux/bpf.h, stable ABI) */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_redirect)(__u32 ifindex, __u64 flags) = (void *)23;
static long (*bpf_xdp_adjust_head)(void *ctx, int delta) = (void *)44;
static long (*bpf_fib_lookup)(void *ctx, void *params, int plen, __u32 flags) = (void *)69;

enum { XDP_ABORTED = 0, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT };
enum { FIB_SUCCESS = 0, FIB_NOT_FWDED = 4 };

struct xdp_md {
    __u32 data;
    __u32 data_end;
    __u32 data_meta;
    __u32 ingress_ifindex;
    __u32 rx_queue_index;
    __u32 egress_ifindex;
};

/* legacy map definitions: the loader (loader.py) creates the maps and patches the references */
struct map_def {
    __u32 type, key_size, value_size, max_entries, flags;
};

struct c2p_key {            /* client -> peer: what the client's datagram carries */
    __u32 client_ip, server_ip;
    __u16 client_port, server_port, channel, pad;
};
#define DEST_LOCAL 1        /* flags: the destination is an address of this host */
struct c2p_value {
    __u32 relay_ip, peer_ip;
    __u16 relay_port, peer_port;
    __u32 flags;
    __u64 packets, bytes;
};
struct p2c_key {            /* peer -> client */
    __u32 peer_ip, relay_ip;
    __u16 peer_port, relay_port;
};
struct p2c_value {
    __u32 server_ip, client_ip;
    __u16 server_port, client_port, channel, flags;
    __u64 packets, bytes;
};

struct map_def SEC("maps") c2p = {1 /* HASH */, sizeof(struct c2p_key), sizeof(struct c2p_value), 1, 0};
struct map_def SEC("maps") p2c = {1 /* HASH */, sizeof(struct p2c_key), sizeof(struct p2c_value), 1, 0};

struct ethhdr { __u8 dst[6]; __u8 src[6]; __u16 proto; };
struct iphdr {
    __u8 ihl_version, tos;
    __u16 tot_len, id, frag_off;
    __u8 ttl, protocol;
    __u16 check;
    __u32 saddr, daddr;
};
struct udphdr { __u16 source, dest, len, check; };

struct fib_params {         /* struct bpf_fib_lookup, IPv4 view */
    __u8 family, l4_protocol;
    __u16 sport, dport;
    __u16 tot_len;          /* union with mtu_result */
    __u32 ifindex;
    __u8 tos;               /* union: tos / flowinfo */
    __u8 pad0[3];
    __u32 ipv4_src;
    __u32 pad1[3];
    __u32 ipv4_dst;
    __u32 pad2[3];
    __u16 h_vlan_proto, h_vlan_TCI;
    __u8 smac[6], dmac[6];
};

#define ETH_P_IP_BE 0x0008  /* htons(0x0800) */
#define IPPROTO_UDP 17

ALWAYS_INLINE __u16 ip_checksum(struct iphdr *ip)
{
    __u32 sum = 0;
    __u16 *p = (__u16 *)ip;
#pragma unroll
    for (int i = 0; i < 10; i++)
        sum += p[i];
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return ~sum & 0xffff;
}

ALWAYS_INLINE __u16 be16(__u16 x) { return (x >> 8) | (x << 8); }

/* Where the rewritten datagram goes: XDP_TX / XDP_REDIRECT (MACs set), XDP_PASS (a local address),
 * or -1: the FIB has no usable answer, leave the packet untouched. */
ALWAYS_INLINE int route(struct xdp_md *ctx, __u32 flags, __u32 src, __u32 dst, __u16 sport, __u16 dport,
                        __u16 tot_len, struct fib_params *fib)
{
    if (flags & DEST_LOCAL)
        return XDP_PASS;
    __builtin_memset(fib, 0, sizeof(*fib));
    fib->family = 2; /* AF_INET */
    fib->l4_protocol = IPPROTO_UDP;
    fib->sport = sport;
    fib->dport = dport;
    fib->tot_len = tot_len;     /* host order */
    fib->ifindex = ctx->ingress_ifindex;
    fib->ipv4_src = src;
    fib->ipv4_dst = dst;
    long rc = bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
    if (rc == FIB_SUCCESS)
        return fib->ifindex == ctx->ingress_ifindex ? XDP_TX : XDP_REDIRECT;
    if (rc == FIB_NOT_FWDED)
        return XDP_PASS;
    return -1;
}

ALWAYS_INLINE int finish(struct ethhdr *eth, struct fib_params *fib, int action)
{
    if (action != XDP_PASS) {
        __builtin_memcpy(eth->dst, fib->dmac, 6);
        __builtin_memcpy(eth->src, fib->smac, 6);
    }
    if (action == XDP_REDIRECT)
        return bpf_redirect(fib->ifindex, 0);
    return action;
}

SEC("xdp")
int turn_channels(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    struct iphdr *ip = data + sizeof(struct ethhdr);
    struct udphdr *udp = (void *)ip + sizeof(struct iphdr);
    __u8 *payload = (void *)udp + sizeof(struct udphdr);
    struct fib_params fib;

    if ((void *)(payload + 4) > data_end)
        return XDP_PASS;
    if (eth->proto != ETH_P_IP_BE || ip->ihl_version != 0x45 || ip->protocol != IPPROTO_UDP)
        return XDP_PASS;
    if (ip->frag_off & 0xff3f)  /* MF or a fragment offset (network order) */
        return XDP_PASS;
    __u16 ip_len = be16(ip->tot_len);
    __u16 udp_len = be16(udp->len);
    if ((void *)ip + ip_len != data_end || udp_len != ip_len - sizeof(struct iphdr) || udp_len < 12)
        return XDP_PASS;

    if (payload[0] >= 0x40 && payload[0] < 0x80) {
        /* client -> peer: ChannelData to a bound channel */
        struct c2p_key key = {ip->saddr, ip->daddr, udp->source, udp->dest, *(__u16 *)payload, 0};
        struct c2p_value *to = bpf_map_lookup_elem(&c2p, &key);
        if (to) {
            __u16 length = be16(*(__u16 *)(payload + 2));
            if (length + 12 == udp_len && (to->flags & DEST_LOCAL)) {
                /* The peer may be another allocation's relayed address on this server (two relay-only
                 * clients): the rewritten datagram would go up the stack to that relay socket and the
                 * Python path.  Apply that allocation's peer -> client entry at once: ChannelData in,
                 * ChannelData out, same length, only the addresses and the channel number change. */
                struct p2c_key hop = {to->relay_ip, to->peer_ip, to->relay_port, to->peer_port};
                struct p2c_value *next = bpf_map_lookup_elem(&p2c, &hop);
                if (next) {
                    int action = route(ctx, next->flags, next->server_ip, next->client_ip, next->server_port,
                                       next->client_port, ip_len, &fib);
                    if (action >= 0) {
                        ip->ttl = 64;
                        ip->saddr = next->server_ip;
                        ip->daddr = next->client_ip;
                        ip->check = 0;
                        ip->check = ip_checksum(ip);
                        udp->source = next->server_port;
                        udp->dest = next->client_port;
                        udp->check = 0;
                        *(__u16 *)payload = next->channel;
                        __sync_fetch_and_add(&to->packets, 1);
                        __sync_fetch_and_add(&to->bytes, length);
                        __sync_fetch_and_add(&next->packets, 1);
                        __sync_fetch_and_add(&next->bytes, length);
                        return finish(eth, &fib, action);
                    }
                }
            }
            if (length + 12 == udp_len) {  /* unpadded, nothing after it: else the Python path */
                int action = route(ctx, to->flags, to->relay_ip, to->peer_ip, to->relay_port, to->peer_port,
                                   ip_len - 4, &fib);
                if (action >= 0) {
                    struct ethhdr e = *eth;
                    struct iphdr h = *ip;
                    if (bpf_xdp_adjust_head(ctx, 4))
                        return XDP_PASS;
                    data = (void *)(long)ctx->data;
                    data_end = (void *)(long)ctx->data_end;
                    eth = data;
                    ip = data + sizeof(struct ethhdr);
                    udp = (void *)ip + sizeof(struct iphdr);
                    if ((void *)(udp + 1) > data_end)
                        return XDP_DROP;
                    *eth = e;
                    h.tot_len = be16(ip_len - 4);
                    h.ttl = 64;
                    h.saddr = to->relay_ip;
                    h.daddr = to->peer_ip;
                    h.check = 0;
                    *ip = h;
                    ip->check = ip_checksum(ip);
                    udp->source = to->relay_port;
                    udp->dest = to->peer_port;
                    udp->len = be16(length + 8);
                    udp->check = 0;
                    __sync_fetch_and_add(&to->packets, 1);
                    __sync_fetch_and_add(&to->bytes, length);
                    return finish(eth, &fib, action);
                }
            }
        }
        /* a peer may also send what looks like ChannelData: fall through to the peer lookup */
    }

    struct p2c_key pkey = {ip->saddr, ip->daddr, udp->source, udp->dest};
    struct p2c_value *back = bpf_map_lookup_elem(&p2c, &pkey);
    if (!back)
        return XDP_PASS;
    __u16 length = udp_len - 8;
    int action = route(ctx, back->flags, back->server_ip, back->client_ip, back->server_port, back->client_port,
                       ip_len + 4, &fib);
    if (action < 0)
        return XDP_PASS;
    struct ethhdr e = *eth;
    struct iphdr h = *ip;
    if (bpf_xdp_adjust_head(ctx, -4))
        return XDP_PASS;
    data = (void *)(long)ctx->data;
    data_end = (void *)(long)ctx->data_end;
    eth = data;
    ip = data + sizeof(struct ethhdr);
    udp = (void *)ip + sizeof(struct iphdr);
    payload = (void *)udp + sizeof(struct udphdr);
    if ((void *)(payload + 4) > data_end)
        return XDP_DROP;
    *eth = e;
    h.tot_len = be16(ip_len + 4);
    h.ttl = 64;
    h.saddr = back->server_ip;
    h.daddr = back->client_ip;
    h.check = 0;
    *ip = h;
    ip->check = ip_checksum(ip);
    udp->source = back->server_port;
    udp->dest = back->client_port;
    udp->len = be16(length + 12);
    udp->check = 0;
    *(__u16 *)payload = back->channel;
    *(__u16 *)(payload + 2) = be16(length);
    __sync_fetch_and_add(&back->packets, 1);
    __sync_fetch_and_add(&back->bytes, length);
    return finish(eth, &fib, action);
}

char _license[] SEC("license") = "Dual MIT/GPL";
