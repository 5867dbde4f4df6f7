# The guest's test network, shared by the e2e IPVS scenarios and the load
# experiment (test/experiment/guest.sh): the director is the guest itself
# on bridge br0 (10.0.0.1/24); realservers and the client are network
# namespaces, each with an eth0 whose veth peer sits on br0. Sourced.
# Every function returns non-zero on the first step that fails, so that
# the caller can say what it was building.

# net_bridge: br0 with the director's address.
net_bridge() {
  ip link add br0 type bridge && ip link set br0 up && ip addr add 10.0.0.1/24 dev br0
}

# net_ns NAME ADDR/PREFIX: namespace NAME, its eth0 at ADDR, the peer
# vNAME on br0, both up, and lo up.
net_ns() {
  ip netns add "$1" &&
    ip link add "v$1" type veth peer name eth0 netns "$1" &&
    ip link set "v$1" master br0 up &&
    ip -n "$1" addr add "$2" dev eth0 &&
    ip -n "$1" link set eth0 up &&
    ip -n "$1" link set lo up
}

# net_dr_vip NS VIP: LVS-DR on realserver NS: the VIP on its lo, where
# arp_ignore/arp_announce keep it from answering ARP for it, so that the
# director alone draws the VIP's packets; replies go straight from the
# realserver to the client.
net_dr_vip() {
  ip netns exec "$1" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 &&
    ip -n "$1" addr add "$2/32" dev lo
}

# net_client VIP...: the client namespace at 10.0.0.100, reaching each VIP
# through the director (which has the VIP on its own lo, so that IPVS
# sees the packets in LOCAL_IN).
net_client() {
  local v
  net_ns client 10.0.0.100/24 || return 1
  for v in "$@"; do
    ip addr add "$v/32" dev lo 2>/dev/null || ip addr show dev lo | grep -q " $v/32 " || return 1
    ip -n client route add "$v/32" via 10.0.0.1 || return 1
  done
}
