import Logging
import Netlink
import SystemCalls
#if canImport(Glibc)
import Glibc
#endif

/// One pod interface carried into the VM: the tap that stands in for it inside the pod's namespace.
public struct CarriedInterface: Sendable {
    /// The pod side (a veth CNI made, usually eth0).
    public let name: String
    public let index: Int32
    public let mac: MACAddress
    public let mtu: UInt32
    public let addresses: [IPPrefix]
    /// The tap (or macvtap) that stands in for it.
    public let tapName: String
    public let tapIndex: Int32
    /// The tap's descriptor: QEMU gets a copy. A tap lives as long as one is open; a macvtap until
    /// it is deleted.
    public let tapDescriptor: Int32
}

/// A route or neighbour of the pod namespace, by interface name.
public struct CarriedRoute: Sendable {
    public let route: Route
    public let device: String
}

public struct CarriedNeighbour: Sendable {
    public let address: IPAddress
    public let mac: MACAddress
    public let device: String
}

/// For every Ethernet interface of the pod's network namespace, a device in the same namespace that
/// QEMU's virtio-net uses, wired so that every frame the veth receives goes to the VM and every frame
/// the VM sends leaves through the veth. The veth keeps its addresses and MAC (the guest's NIC takes
/// the same ones). Two models, as Kata has them:
/// - `tcfilter` (the default): a tap and tc ingress redirects both ways; only an ingress qdisc is
///   added to the veth.
/// - `macvtap`: a macvtap in passthru mode on the veth (it takes every frame the veth receives and
///   has its MAC); the veth is put in promiscuous mode while the macvtap exists. One copy less per
///   frame than a tap, no tc.
public final class PodNetwork: @unchecked Sendable {
    public enum Model: String, Sendable, CaseIterable {
        case tcfilter, macvtap
    }

    public let namespacePath: String
    public let model: Model
    public let interfaces: [CarriedInterface]
    public let routes: [CarriedRoute]
    public let neighbours: [CarriedNeighbour]
    /// Stays bound to the pod namespace, for teardown.
    private let socket: RouteSocket
    private let logger: Logger
    private let lock = NSLockLite()
    private var detached = false  // guarded by lock

    static let tapPrefix = "cocoon-tap"
    static let macvtapPrefix = "cocoon-mvt"

    /// Reads the namespace and wires its interfaces to new devices. Throws having undone its changes.
    /// `scratch`: a directory where the macvtap model may make (and remove) a private mount.
    public static func attach(namespacePath: String, model: Model = .tcfilter, scratch: String,
                              logger: Logger) throws(PodNetworkError) -> PodNetwork {
        struct Wired: Sendable {
            var socket: RouteSocket
            var interfaces: [CarriedInterface]
            var routes: [CarriedRoute]
            var neighbours: [CarriedNeighbour]
        }
        let wired: Wired
        do throws(NetlinkError) {
            wired = try NetworkNamespace.run(in: namespacePath) { () throws(NetlinkError) -> Wired in
                let socket = try RouteSocket.open()
                // Undone on failure: only what this attach added (a qdisc that was there is someone else's).
                var taps: [Int32] = []
                var qdiscs: [Int32] = []
                var macvtaps: [Int32] = []
                do throws(NetlinkError) {
                    let links = try socket.links()
                    let carried = try carriable(links)
                    let addresses = try socket.addresses()
                    var interfaces: [CarriedInterface] = []
                    for (n, link) in carried.enumerated() {
                        let tapLink: Link
                        let descriptor: Int32
                        switch model {
                        case .tcfilter:
                            let tap = try TapDevice.open(name: "\(tapPrefix)\(n)")
                            taps.append(tap.descriptor)
                            // The tap is only a wire: no IPv6 link-local address, router solicitations or DAD of its own.
                            try? Files.writeString("/proc/sys/net/ipv6/conf/\(tap.name)/disable_ipv6", "1")
                            guard let found = try socket.link(named: tap.name) else {
                                throw NetlinkError(.notFound, "tap \(tap.name) vanished after it was created")
                            }
                            tapLink = found
                            descriptor = tap.descriptor
                            try socket.setLink(index: tapLink.index, up: true, mtu: link.mtu)
                            do throws(NetlinkError) {
                                try socket.addIngressQdisc(index: link.index)
                                qdiscs.append(link.index)
                            } catch where error.code == .alreadyExists {
                                throw NetlinkError(.alreadyExists,
                                    "interface \(link.name) already has an ingress qdisc: is another sandbox using this network namespace?")
                            }
                            try socket.addIngressQdisc(index: tapLink.index)
                            try socket.addRedirect(from: link.index, to: tapLink.index)
                            try socket.addRedirect(from: tapLink.index, to: link.index)
                        case .macvtap:
                            let name = "\(macvtapPrefix)\(n)"
                            do throws(NetlinkError) {
                                try socket.addMacvtap(name: name, parent: link.index, mtu: link.mtu)
                            } catch {
                                throw NetlinkError(error.code, "interface \(link.name): \(error.message)")
                            }
                            guard let found = try socket.link(named: name) else {
                                throw NetlinkError(.notFound, "macvtap \(name) vanished after it was created")
                            }
                            macvtaps.append(found.index)
                            tapLink = found
                            try? Files.writeString("/proc/sys/net/ipv6/conf/\(name)/disable_ipv6", "1")
                            try socket.setLink(index: found.index, up: true)
                            descriptor = try MacvtapDevice.open(name: name, index: found.index, scratch: "\(scratch)/macvtap\(n)")
                            taps.append(descriptor)
                        }
                        let own = addresses.filter {
                            $0.index == link.index && !$0.prefix.address.isIPv6LinkLocal && $0.scope != 254
                        }.map(\.prefix)
                        interfaces.append(CarriedInterface(name: link.name, index: link.index, mac: link.mac!, mtu: link.mtu,
                                                           addresses: own, tapName: tapLink.name, tapIndex: tapLink.index,
                                                           tapDescriptor: descriptor))
                    }
                    let names = Dictionary(uniqueKeysWithValues: interfaces.map { ($0.index, $0.name) })
                    let routes = try socket.routes().compactMap { r -> CarriedRoute? in
                        // What the guest's kernel derives itself (routes of its addresses, fe80::/64) is left to it.
                        guard r.table == Route.mainTable, r.type == Route.unicast, r.protocolNumber != Route.protocolKernel,
                              let oif = r.outputIndex, let device = names[oif] else { return nil }
                        return CarriedRoute(route: r, device: device)
                    }
                    let neighbours = try socket.neighbours().compactMap { n -> CarriedNeighbour? in
                        guard n.isPermanent, let mac = n.mac, let device = names[n.index] else { return nil }
                        return CarriedNeighbour(address: n.address, mac: mac, device: device)
                    }
                    return Wired(socket: socket, interfaces: interfaces, routes: routes, neighbours: neighbours)
                } catch {
                    for index in qdiscs { try? socket.deleteIngressQdisc(index: index) }
                    for index in macvtaps { try? socket.deleteLink(index: index) }
                    for fd in taps { close(fd) }
                    socket.close()
                    throw error
                }
            }
        } catch {
            throw PodNetworkError(error.code, "pod network namespace \(namespacePath): \(error.message)")
        }
        let network = PodNetwork(namespacePath: namespacePath, model: model, interfaces: wired.interfaces, routes: wired.routes,
                                 neighbours: wired.neighbours, socket: wired.socket, logger: logger)
        logger.debug("pod network attached", metadata: [
            "namespace": "\(namespacePath)",
            "interfaces": "\(wired.interfaces.map { "\($0.name)->\($0.tapName)" }.joined(separator: " "))",
        ])
        return network
    }

    /// The interfaces to carry: every one but loopback, which must be Ethernet and up.
    static func carriable(_ links: [Link]) throws(NetlinkError) -> [Link] {
        var out: [Link] = []
        for link in links where !link.isLoopback {
            if (link.kind == "tun" && link.name.hasPrefix(tapPrefix)) || (link.kind == "macvtap" && link.name.hasPrefix(macvtapPrefix)) {
                throw NetlinkError(.alreadyExists, "\(link.kind == "tun" ? "tap" : "macvtap") \(link.name) already exists: is another sandbox using this network namespace?")
            }
            // ipvlan shares its parent's MAC and, in its L3 modes, passes no Ethernet frames at all.
            if link.kind == "ipvlan" || link.kind == "ipvtap" {
                throw NetlinkError(.invalidArgument,
                    "interface \(link.name) is an ipvlan device, which cannot be carried into a VM; use veth (bridge, ptp CNI plugins) or macvlan")
            }
            guard link.isEthernet, let mac = link.mac, mac.isUsableUnicast else {
                throw NetlinkError(.invalidArgument,
                    "interface \(link.name) (\(link.kind ?? "hardware type \(link.hardwareType)")) is not an Ethernet device and cannot be carried into a VM; only Ethernet interfaces (veth, macvlan, physical) can")
            }
            // A down interface carries nothing; CNI brings the ones it configures up.
            guard link.isUp else { continue }
            out.append(link)
        }
        return out
    }

    private init(namespacePath: String, model: Model, interfaces: [CarriedInterface], routes: [CarriedRoute], neighbours: [CarriedNeighbour],
                 socket: RouteSocket, logger: Logger) {
        self.namespacePath = namespacePath
        self.model = model
        self.interfaces = interfaces
        self.routes = routes
        self.neighbours = neighbours
        self.socket = socket
        self.logger = logger
    }

    /// Writes what `releaseRecorded` needs should this process die without detaching (SIGKILL):
    /// the namespace path, then "index name" per carried interface.
    public func record(to path: String) {
        let text = ([namespacePath] + interfaces.map { "\($0.index) \($0.name)" }).joined(separator: "\n") + "\n"
        try? Files.writeString(path, text, mode: 0o600)
    }

    /// After the controller died: removes the ingress qdiscs it added, on the interfaces that still have
    /// the recorded index and name (its taps went with QEMU), and its macvtaps (which outlive their
    /// descriptors; no other sandbox can have made one there). Best effort; a namespace gone is fine.
    public static func releaseRecorded(at path: String) {
        guard let text = try? Files.readString(path) else { return }
        var lines = text.split(separator: "\n").map(String.init)
        guard !lines.isEmpty else { return }
        let namespacePath = lines.removeFirst()
        let recorded: [(Int32, String)] = lines.compactMap { line in
            let f = line.split(separator: " ", maxSplits: 1)
            guard f.count == 2, let index = Int32(f[0]) else { return nil }
            return (index, String(f[1]))
        }
        _ = try? NetworkNamespace.run(in: namespacePath) { () throws(NetlinkError) in
            let socket = try RouteSocket.open()
            defer { socket.close() }
            let links = try socket.links()
            for (index, name) in recorded where links.contains(where: { $0.index == index && $0.name == name }) {
                try? socket.deleteIngressQdisc(index: index)
            }
            for link in links where link.kind == "macvtap" && link.name.hasPrefix(macvtapPrefix) {
                try? socket.deleteLink(index: link.index)
            }
        }
    }

    /// Removes what attach added (the ingress qdiscs on the pod interfaces, with their filters; the taps,
    /// once QEMU's copies are closed too). The pod interfaces stay as CNI made them. Safe to call twice.
    public func detach() {
        let first = lock.withLock { () -> Bool in
            defer { detached = true }
            return !detached
        }
        guard first else { return }
        for iface in interfaces {
            do throws(NetlinkError) {
                switch model {
                case .tcfilter: try socket.deleteIngressQdisc(index: iface.index)
                case .macvtap: try socket.deleteLink(index: iface.tapIndex)
                }
            } catch where error.code == .notFound || error.code == .invalidArgument {
                // The interface or the namespace is already gone (CNI DEL came first).
            } catch {
                logger.warning("removing the \(model == .tcfilter ? "tc redirect" : "macvtap") of \(iface.name) in \(namespacePath): \(error.message)")
            }
            close(iface.tapDescriptor)
        }
        socket.close()
    }
}
