import AgentAPI
import Foundation
@testable import GuestAgent
import Logging
import Netlink
import Testing
import TestSupport

/// The guest side of pod networking, without a VM: the agent's network code configures a namespace
/// made by the test, where a veth with the "virtio-net" MAC stands in for the guest's NIC.
@Suite struct GuestNetworkTests {
    let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    func request(_ edit: (inout Cocoon_Agent_V1_ConfigureNetworkRequest) -> Void = { _ in }) -> Cocoon_Agent_V1_ConfigureNetworkRequest {
        var r = Cocoon_Agent_V1_ConfigureNetworkRequest.with {
            $0.interfaces = [.with {
                $0.name = "eth0"
                $0.mac = "02:00:c6:12:07:02"
                $0.mtu = 1400
                $0.addresses = ["198.18.7.2/24", "2001:2:0:7::2/64"]
            }]
            $0.routes = [
                .with { $0.family = 4; $0.gateway = "198.18.7.1"; $0.device = "eth0" },
                .with { $0.family = 4; $0.destination = "198.19.7.0/24"; $0.device = "eth0"; $0.scope = 253 },
                .with { $0.family = 6; $0.gateway = "2001:2:0:7::1"; $0.device = "eth0"; $0.metric = 5 },
            ]
            $0.neighbors = [.with { $0.address = "198.18.7.9"; $0.mac = "02:00:00:00:00:09"; $0.device = "eth0" }]
        }
        edit(&r)
        return r
    }

    @Test(arguments: [
        ("interfaces[0].name", { @Sendable (r: inout Cocoon_Agent_V1_ConfigureNetworkRequest) in r.interfaces[0].name = "lo" }),
        ("interfaces[0].name", { r in r.interfaces[0].name = "a/b" }),
        ("interfaces[0].name", { r in r.interfaces[0].name = "a-name-longer-than-15" }),
        ("interfaces[0].mac", { r in r.interfaces[0].mac = "01:00:5e:00:00:01" }),
        ("interfaces[0].mtu", { r in r.interfaces[0].mtu = 20 }),
        ("interfaces[0].addresses[1]", { r in r.interfaces[0].addresses[1] = "2001:2::1/200" }),
        ("routes[0].device", { r in r.routes[0].device = "eth9" }),
        ("routes[1].destination", { r in r.routes[1].destination = "2001:2::/64" }),
        ("routes[2].gateway", { r in r.routes[2].gateway = "198.18.7.1" }),
        ("routes[0].family", { r in r.routes[0].family = 5 }),
        ("neighbors[0].mac", { r in r.neighbors[0].mac = "zz" }),
    ] as [(String, @Sendable (inout Cocoon_Agent_V1_ConfigureNetworkRequest) -> Void)])
    func badFieldsAreNamed(field: String, edit: @Sendable (inout Cocoon_Agent_V1_ConfigureNetworkRequest) -> Void) {
        #expect(throws: Never.self) { _ = try GuestNetwork.plan(request()) }
        let error = #expect(throws: GuestAgentError.self) { _ = try GuestNetwork.plan(request(edit)) }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message.contains("ConfigureNetworkRequest.\(field):") == true, "\(String(describing: error))")
    }

    @Test(.enabled(if: VethPair.unavailableReason == nil, Comment(rawValue: VethPair.unavailableReason ?? "")))
    func configuresTheNICFoundByItsMAC() throws {
        let ns = "cocoon-gn-\(getpid())"
        VethPair.shell("ip netns del \(ns) 2>/dev/null")
        #expect(VethPair.shell("ip netns add \(ns) && ip -n \(ns) link add eth0 address 02:00:00:00:00:01 type veth peer name nic address 02:00:c6:12:07:02 && ip -n \(ns) link set eth0 up && ip -n \(ns) link set nic up").0 == 0)
        defer { VethPair.shell("ip netns del \(ns)") }
        // The guest's NIC may come up under the name the pod interface wants, and may already be up: both are renamed safely.
        try NetworkNamespace.run(in: "/var/run/netns/\(ns)") { [logger] () throws(NetlinkError) in
            let socket = try RouteSocket.open()
            defer { socket.close() }
            do throws(GuestAgentError) {
                try GuestNetwork.configure(request {
                    $0.interfaces[0].name = "eth0x"
                    for i in $0.routes.indices { $0.routes[i].device = "eth0x" }
                    $0.neighbors[0].device = "eth0x"
                }, socket: socket, logger: logger)
            } catch {
                throw NetlinkError(error.code, error.message)
            }
        }
        let link = VethPair.shell("ip -n \(ns) -o link show eth0x").1
        #expect(link.contains("mtu 1400") && link.contains("02:00:c6:12:07:02"), "\(link)")
        let addresses = VethPair.shell("ip -n \(ns) -o addr show dev eth0x").1
        #expect(addresses.contains("198.18.7.2/24") && addresses.contains("2001:2:0:7::2/64"), "\(addresses)")
        let routes = VethPair.shell("ip -n \(ns) route show; ip -n \(ns) -6 route show").1
        #expect(routes.contains("default via 198.18.7.1 dev eth0x"), "\(routes)")
        #expect(routes.contains("198.19.7.0/24 dev eth0x"), "\(routes)")
        #expect(routes.contains("default via 2001:2:0:7::1 dev eth0x") && routes.contains("metric 5"), "\(routes)")
        #expect(VethPair.shell("ip -n \(ns) neigh show dev eth0x").1.contains("198.18.7.9 lladdr 02:00:00:00:00:09 PERMANENT"))

        // A MAC no device has is refused with the MAC named.
        let missing = #expect(throws: NetlinkError.self) {
            try NetworkNamespace.run(in: "/var/run/netns/\(ns)") { [logger] () throws(NetlinkError) in
                let socket = try RouteSocket.open()
                defer { socket.close() }
                do throws(GuestAgentError) {
                    try GuestNetwork.configure(request { $0.interfaces[0].mac = "02:00:00:00:00:77" }, socket: socket, logger: logger)
                } catch {
                    throw NetlinkError(error.code, error.message)
                }
            }
        }
        #expect(missing?.code == .notFound)
        #expect(missing?.message.contains("02:00:00:00:00:77") == true)
    }
}
