import CSupport
#if canImport(Glibc)
import Glibc
#endif

// The tc pieces of the "tcfilter" model: an ingress qdisc on each side and a u32 match-all filter
// whose mirred action redirects every frame to the other device's egress. (cls_matchall would be
// simpler, but not every host kernel has it; u32 is everywhere.)

extension RouteSocket {
    static let ingressHandle: UInt32 = 0xFFFF_0000
    static let ingressParent: UInt32 = 0xFFFF_FFF1  // TC_H_INGRESS

    private func tcHeader(index: Int32, handle: UInt32, parent: UInt32, info: UInt32) -> [UInt8] {
        [0, 0, 0, 0] + [UInt8].native(index) + [UInt8].native(handle) + [UInt8].native(parent) + [UInt8].native(info)
    }

    public func addIngressQdisc(index: Int32) throws(NetlinkError) {
        var r = NetlinkRequest(type: Netlink.newQdisc, flags: Netlink.create | Netlink.excl,
                               header: tcHeader(index: index, handle: Self.ingressHandle, parent: Self.ingressParent, info: 0))
        r.attributes.add(1, string: "ingress")
        try execute(r, what: "add ingress qdisc to link \(index)")
    }

    /// Removes the ingress qdisc and with it every filter on it.
    public func deleteIngressQdisc(index: Int32) throws(NetlinkError) {
        var r = NetlinkRequest(type: Netlink.delQdisc, flags: 0,
                               header: tcHeader(index: index, handle: Self.ingressHandle, parent: Self.ingressParent, info: 0))
        r.attributes.add(1, string: "ingress")
        try execute(r, what: "delete ingress qdisc of link \(index)")
    }

    /// Every frame arriving on `from` leaves through `to`.
    public func addRedirect(from: Int32, to: Int32) throws(NetlinkError) {
        let ethAllNetworkOrder: UInt32 = 0x0300  // htons(ETH_P_ALL)
        var r = NetlinkRequest(type: Netlink.newFilter, flags: Netlink.create | Netlink.excl,
                               header: tcHeader(index: from, handle: 0, parent: Self.ingressHandle, info: (1 << 16) | ethAllNetworkOrder))
        r.attributes.add(1, string: "u32")
        r.attributes.nested(2) { options in
            // tc_u32_sel with one key that matches everything: flags TC_U32_TERMINAL, nkeys 1.
            var selector: [UInt8] = [1, 0, 1, 0]
            selector += [UInt8](repeating: 0, count: 12)  // offmask, off, offoff, hoff, hmask
            selector += [UInt8](repeating: 0, count: 16)  // key: mask 0, value 0, off 0, offmask 0
            options.add(5, selector)  // TCA_U32_SEL
            options.nested(7) { actions in  // TCA_U32_ACT
                actions.nested(1) { action in
                    action.add(1, string: "mirred")  // TCA_ACT_KIND
                    action.nested(2) { params in  // TCA_ACT_OPTIONS
                        // tc_mirred: index, capab, action TC_ACT_STOLEN, refcnt, bindcnt, eaction TCA_EGRESS_REDIR, ifindex
                        var mirred: [UInt8] = []
                        mirred.appendNative(UInt32(0))
                        mirred.appendNative(UInt32(0))
                        mirred.appendNative(Int32(4))
                        mirred.appendNative(Int32(0))
                        mirred.appendNative(Int32(0))
                        mirred.appendNative(Int32(1))
                        mirred.appendNative(UInt32(bitPattern: to))
                        params.add(2, mirred)  // TCA_MIRRED_PARMS
                    }
                }
            }
        }
        try execute(r, what: "redirect link \(from) to link \(to)")
    }
}

/// A tap device, opened in the calling thread's network namespace.
public struct TapDevice: Sendable {
    public let name: String
    public let descriptor: Int32

    /// Must run where the tap should live (inside `NetworkNamespace.run`). The caller owns the descriptor.
    public static func open(name: String) throws(NetlinkError) -> TapDevice {
        var actual = [CChar](repeating: 0, count: 16)
        let fd = cocoon_tap_open(name, &actual, actual.count)
        guard fd >= 0 else {
            let e = errno
            throw NetlinkError(NetlinkError.code(forErrno: e), "create tap \(name) (/dev/net/tun): \(String(cString: strerror(e)))")
        }
        return TapDevice(name: String(decoding: actual.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self), descriptor: fd)
    }
}
