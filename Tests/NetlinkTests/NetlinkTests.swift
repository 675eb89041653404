import Foundation
import Netlink
import Testing

/// Runs a command, returns its stdout; fails the test on a non-zero status.
@discardableResult
func sh(_ command: String) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", command]
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else {
        throw NSError(domain: "sh", code: Int(p.terminationStatus),
                      userInfo: [NSLocalizedDescriptionKey: "\(command): \(String(decoding: e, as: UTF8.self))"])
    }
    return String(decoding: o, as: UTF8.self)
}

let netnsReason: String? = {
    if geteuid() != 0 { return "network namespaces need root" }
    if (try? sh("command -v ip")) == nil { return "iproute2 (ip) is not installed (make deps)" }
    return nil
}()

@Suite struct AddressParsingTests {
    @Test func addressesPrefixesAndMACsRoundTrip() {
        #expect(IPAddress("198.18.0.1")?.description == "198.18.0.1")
        #expect(IPAddress("2001:2::1")?.description == "2001:2::1")
        #expect(IPAddress("fe80::1")?.isIPv6LinkLocal == true)
        #expect(IPAddress("198.18.0.256") == nil)
        #expect(IPPrefix("198.18.0.2/24")?.length == 24)
        #expect(IPPrefix("198.18.0.2/33") == nil)
        #expect(IPPrefix("2001:2::2/129") == nil)
        #expect(IPPrefix("2001:2::2")?.length == 128)
        #expect(MACAddress("0A:bb:cc:dd:ee:0f")?.description == "0a:bb:cc:dd:ee:0f")
        #expect(MACAddress("0a:bb:cc:dd:ee") == nil)
        #expect(MACAddress("01:00:5e:00:00:01")?.isUsableUnicast == false)
    }
}

/// Each test gets a namespace of its own, made with iproute2 (the independent peer) and removed after.
@Suite(.serialized, .enabled(if: netnsReason == nil, "\(netnsReason ?? "")"))
struct RouteSocketTests {
    func withNamespace(_ body: (String) throws -> Void) throws {
        let name = "cocoon-nl-\(getpid())-\(UInt32.random(in: 0...0xffff))"
        try sh("ip netns add \(name)")
        defer { _ = try? sh("ip netns del \(name)") }
        try body(name)
    }

    @Test func readsWhatIproute2Configured() throws {
        try withNamespace { ns in
            try sh("""
                ip -n \(ns) link add veth0 address 02:00:c6:12:00:02 mtu 1400 type veth peer name veth1 &&
                ip -n \(ns) link set veth0 up && ip -n \(ns) link set veth1 up &&
                ip -n \(ns) addr add 198.18.0.2/24 dev veth0 && ip -n \(ns) addr add 2001:2::2/64 dev veth0 nodad &&
                ip -n \(ns) route add default via 198.18.0.1 dev veth0 &&
                ip -n \(ns) route add 198.19.0.0/16 via 198.18.0.254 dev veth0 metric 7 &&
                ip -n \(ns) neigh add 198.18.0.9 lladdr 02:00:00:00:00:09 dev veth0 nud permanent
                """)
            let result = try NetworkNamespace.run(in: "/var/run/netns/\(ns)") { () throws(NetlinkError) -> ([Link], [InterfaceAddress], [Route], [Neighbour]) in
                let socket = try RouteSocket.open()
                defer { socket.close() }
                return (try socket.links(), try socket.addresses(), try socket.routes(), try socket.neighbours())
            }
            let (links, addresses, routes, neighbours) = result
            let veth = try #require(links.first { $0.name == "veth0" })
            #expect(veth.kind == "veth")
            #expect(veth.mac?.description == "02:00:c6:12:00:02")
            #expect(veth.mtu == 1400)
            #expect(veth.isUp && veth.isEthernet)
            #expect(links.contains { $0.isLoopback })
            let mine = addresses.filter { $0.index == veth.index }.map(\.prefix.description)
            #expect(mine.contains("198.18.0.2/24") && mine.contains("2001:2::2/64"))
            let main = routes.filter { $0.table == Route.mainTable }
            let defaultRoute = try #require(main.first { $0.destination == nil && $0.family == .inet })
            #expect(defaultRoute.gateway?.description == "198.18.0.1")
            #expect(defaultRoute.outputIndex == veth.index)
            let via = try #require(main.first { $0.destination?.description == "198.19.0.0/16" })
            #expect(via.priority == 7 && via.scope == Route.scopeUniverse)
            #expect(main.contains { $0.destination?.description == "198.18.0.0/24" && $0.protocolNumber == Route.protocolKernel })
            let neighbour = try #require(neighbours.first { $0.address.description == "198.18.0.9" })
            #expect(neighbour.isPermanent && neighbour.mac?.description == "02:00:00:00:00:09")
        }
    }

    @Test func configuresWhatIproute2Reads() throws {
        try withNamespace { ns in
            try sh("ip -n \(ns) link add dummyA type veth peer name dummyB")
            try NetworkNamespace.run(in: "/var/run/netns/\(ns)") { () throws(NetlinkError) in
                let socket = try RouteSocket.open()
                defer { socket.close() }
                guard let link = try socket.link(named: "dummyA") else { throw NetlinkError(.notFound, "dummyA") }
                try socket.setLink(index: link.index, mtu: 1280, name: "eth7", mac: MACAddress("02:aa:bb:cc:dd:01"))
                try socket.setLink(index: link.index, up: true)
                try socket.addAddress(index: link.index, IPPrefix("198.18.1.2/24")!)
                try socket.addAddress(index: link.index, IPPrefix("2001:2:0:1::2/64")!)
                try socket.addRoute(Route(family: .inet, destination: nil, gateway: IPAddress("198.18.1.1"), outputIndex: link.index, scope: Route.scopeUniverse))
                try socket.addRoute(Route(family: .inet, destination: IPPrefix("198.18.9.0/24"), gateway: nil, outputIndex: link.index, scope: Route.scopeLink))
                try socket.addNeighbour(index: link.index, address: IPAddress("198.18.1.7")!, mac: MACAddress("02:00:00:00:00:07")!)
            }
            let link = try sh("ip -n \(ns) -o link show eth7")
            #expect(link.contains("mtu 1280") && link.contains("02:aa:bb:cc:dd:01") && link.contains("UP"), "\(link)")
            let addrs = try sh("ip -n \(ns) -o addr show dev eth7")
            #expect(addrs.contains("198.18.1.2/24") && addrs.contains("2001:2:0:1::2/64"), "\(addrs)")
            #expect(!addrs.contains("tentative"), "IPv6 addresses are added without duplicate address detection")
            let routes = try sh("ip -n \(ns) route show")
            #expect(routes.contains("default via 198.18.1.1 dev eth7"), "\(routes)")
            #expect(routes.contains("198.18.9.0/24 dev eth7"), "\(routes)")
            #expect(try sh("ip -n \(ns) neigh show dev eth7").contains("198.18.1.7 lladdr 02:00:00:00:00:07 PERMANENT"))
        }
    }

    @Test func tapAndRedirectFiltersComeAndGo() throws {
        try withNamespace { ns in
            try sh("ip -n \(ns) link add vethX type veth peer name vethY")
            let tap = try NetworkNamespace.run(in: "/var/run/netns/\(ns)") { () throws(NetlinkError) -> TapDevice in
                let tap = try TapDevice.open(name: "cocoon-test0")
                let socket = try RouteSocket.open()
                defer { socket.close() }
                guard let veth = try socket.link(named: "vethX"), let t = try socket.link(named: tap.name) else {
                    throw NetlinkError(.notFound, "links")
                }
                try socket.addIngressQdisc(index: veth.index)
                try socket.addIngressQdisc(index: t.index)
                try socket.addRedirect(from: veth.index, to: t.index)
                try socket.addRedirect(from: t.index, to: veth.index)
                return tap
            }
            #expect(tap.name == "cocoon-test0")
            let filters = try sh("tc -n \(ns) filter show dev vethX ingress")
            #expect(filters.contains("u32") && filters.contains("Egress Redirect to device cocoon-test0"), "\(filters)")
            #expect(try sh("tc -n \(ns) filter show dev cocoon-test0 ingress").contains("Egress Redirect to device vethX"))
            // A second ingress qdisc is refused with the kernel's reason.
            let again = #expect(throws: NetlinkError.self) {
                try NetworkNamespace.run(in: "/var/run/netns/\(ns)") { () throws(NetlinkError) in
                    let socket = try RouteSocket.open()
                    defer { socket.close() }
                    try socket.addIngressQdisc(index: try socket.link(named: "vethX")!.index)
                }
            }
            #expect(again?.code == .alreadyExists, "\(String(describing: again))")
            try NetworkNamespace.run(in: "/var/run/netns/\(ns)") { () throws(NetlinkError) in
                let socket = try RouteSocket.open()
                defer { socket.close() }
                try socket.deleteIngressQdisc(index: try socket.link(named: "vethX")!.index)
            }
            #expect(try sh("tc -n \(ns) qdisc show dev vethX").contains("ingress") == false)
            close(tap.descriptor)
            // Not persistent: the tap goes with its last descriptor.
            #expect(try sh("ip -n \(ns) -o link").contains("cocoon-test0") == false)
        }
    }

    @Test func badNamespacePathsAreNamed() throws {
        let missing = #expect(throws: NetlinkError.self) {
            try NetworkNamespace.run(in: "/var/run/netns/no-such-namespace-\(getpid())") { () throws(NetlinkError) in }
        }
        #expect(missing?.code == .notFound)
        #expect(missing?.message.contains("no-such-namespace") == true)
        let notNetns = #expect(throws: NetlinkError.self) {
            try NetworkNamespace.run(in: "/etc/hostname") { () throws(NetlinkError) in }
        }
        #expect(notNetns?.code == .invalidArgument)
        #expect(notNetns?.message.contains("not a network namespace") == true, "\(String(describing: notNetns))")
    }
}
