import AgentAPI
import Logging
import Netlink

/// The guest's side of pod networking: the virtio-net devices the host attached (one per pod
/// interface, each with that interface's MAC) get the pod interface's name, MTU, addresses,
/// routes and static neighbours. Everything is validated before the first change.
public enum GuestNetwork {
    static let maxInterfaces = 16
    static let maxRoutes = 256

    struct Plan {
        var interfaces: [(name: String, mac: MACAddress, mtu: UInt32, addresses: [IPPrefix])] = []
        var routes: [(route: Route, device: String)] = []
        var neighbours: [(address: IPAddress, mac: MACAddress, device: String)] = []
    }

    /// Checks every field, naming the bad one.
    static func plan(_ r: Cocoon_Agent_V1_ConfigureNetworkRequest) throws(GuestAgentError) -> Plan {
        func bad(_ field: String, _ why: String) -> GuestAgentError { GuestAgentError(.invalidArgument, "ConfigureNetworkRequest.\(field): \(why)") }
        guard r.interfaces.count <= maxInterfaces else { throw bad("interfaces", "at most \(maxInterfaces), got \(r.interfaces.count)") }
        guard r.routes.count <= maxRoutes, r.neighbors.count <= maxRoutes else {
            throw bad("routes", "at most \(maxRoutes) routes and neighbors")
        }
        var plan = Plan()
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-@")
        for (i, iface) in r.interfaces.enumerated() {
            let f = "interfaces[\(i)]"
            guard (1...15).contains(iface.name.utf8.count), iface.name.allSatisfy(allowed.contains), iface.name != "lo",
                  iface.name != ".", iface.name != ".." else {
                throw bad("\(f).name", "'\(iface.name)' is not a usable interface name (1 to 15 letters, digits, '_', '.', '-', '@'; not lo)")
            }
            guard let mac = MACAddress(iface.mac), mac.isUsableUnicast else { throw bad("\(f).mac", "'\(iface.mac)' is not a unicast MAC address") }
            guard iface.mtu == 0 || (68...65535).contains(iface.mtu) else { throw bad("\(f).mtu", "\(iface.mtu) is outside 68 to 65535") }
            var addresses: [IPPrefix] = []
            for (j, text) in iface.addresses.enumerated() {
                guard let p = IPPrefix(text) else { throw bad("\(f).addresses[\(j)]", "'\(text)' is not address/prefix-length") }
                addresses.append(p)
            }
            guard !plan.interfaces.contains(where: { $0.name == iface.name || $0.mac == mac }) else {
                throw bad("\(f)", "name \(iface.name) or MAC \(iface.mac) appears twice")
            }
            plan.interfaces.append((iface.name, mac, iface.mtu, addresses))
        }
        let names = Set(plan.interfaces.map(\.name))
        for (i, route) in r.routes.enumerated() {
            let f = "routes[\(i)]"
            guard names.contains(route.device) else { throw bad("\(f).device", "'\(route.device)' is not one of the interfaces") }
            guard route.family == 4 || route.family == 6 else { throw bad("\(f).family", "must be 4 or 6, got \(route.family)") }
            let family: AddressFamily = route.family == 4 ? .inet : .inet6
            var destination: IPPrefix?
            if !route.destination.isEmpty {
                guard let d = IPPrefix(route.destination), d.address.family == family else {
                    throw bad("\(f).destination", "'\(route.destination)' is not an IPv\(route.family) address/prefix-length")
                }
                destination = d
            }
            func address(_ text: String, _ field: String) throws(GuestAgentError) -> IPAddress? {
                if text.isEmpty { return nil }
                guard let a = IPAddress(text), a.family == family else { throw bad("\(f).\(field)", "'\(text)' is not an IPv\(route.family) address") }
                return a
            }
            let gateway = try address(route.gateway, "gateway")
            let source = try address(route.source, "source")
            guard route.scope <= 255 else { throw bad("\(f).scope", "must be below 256") }
            plan.routes.append((Route(family: family, destination: destination, gateway: gateway, outputIndex: nil, preferredSource: source,
                                      scope: UInt8(route.scope), priority: route.metric == 0 ? nil : route.metric), route.device))
        }
        for (i, n) in r.neighbors.enumerated() {
            let f = "neighbors[\(i)]"
            guard names.contains(n.device) else { throw bad("\(f).device", "'\(n.device)' is not one of the interfaces") }
            guard let a = IPAddress(n.address) else { throw bad("\(f).address", "'\(n.address)' is not an IP address") }
            guard let m = MACAddress(n.mac) else { throw bad("\(f).mac", "'\(n.mac)' is not a MAC address") }
            plan.neighbours.append((a, m, n.device))
        }
        return plan
    }

    /// Applies the request through `socket` (the guest's own namespace, or a test's).
    public static func configure(_ r: Cocoon_Agent_V1_ConfigureNetworkRequest, socket: RouteSocket, logger: Logger) throws(GuestAgentError) {
        let plan = try plan(r)
        do throws(NetlinkError) {
            let links = try socket.links()
            var indexes: [String: Int32] = [:]
            for iface in plan.interfaces {
                guard let link = links.first(where: { $0.mac == iface.mac && !$0.isLoopback }) else {
                    throw NetlinkError(.notFound, "no network device with MAC \(iface.mac) in the guest (was its virtio-net device attached?)")
                }
                indexes[iface.name] = link.index
            }
            // Two passes, so that names the devices have now (eth0, eth1) never collide with the wanted ones.
            // Down first, in a request of its own: the kernel renames before it applies flags, and refuses
            // to rename a device that is up.
            for (n, iface) in plan.interfaces.enumerated() {
                try socket.setLink(index: indexes[iface.name]!, up: false)
                try socket.setLink(index: indexes[iface.name]!, name: "cocoon-nic\(n)")
            }
            for iface in plan.interfaces {
                let index = indexes[iface.name]!
                try socket.setLink(index: index, mtu: iface.mtu == 0 ? nil : iface.mtu, name: iface.name)
                try socket.setLink(index: index, up: true)
                for address in iface.addresses {
                    do throws(NetlinkError) {
                        try socket.addAddress(index: index, address)
                    } catch where error.code == .alreadyExists {}
                }
            }
            // Routes on the link first: a gateway must be reachable before a route through it is added.
            let ordered = plan.routes.filter { $0.route.gateway == nil } + plan.routes.filter { $0.route.gateway != nil }
            for (route, device) in ordered {
                var r = route
                r.outputIndex = indexes[device]
                do throws(NetlinkError) {
                    try socket.addRoute(r)
                } catch where error.code == .alreadyExists {}
            }
            for n in plan.neighbours {
                try socket.addNeighbour(index: indexes[n.device]!, address: n.address, mac: n.mac)
            }
        } catch {
            throw GuestAgentError(error.code, "configuring the guest network: \(error.message)")
        }
        logger.info("network configured", metadata: [
            "interfaces": "\(plan.interfaces.map { "\($0.name)=\($0.addresses.map(\.description).joined(separator: ","))" }.joined(separator: " "))",
            "routes": "\(plan.routes.count)",
        ])
    }
}
