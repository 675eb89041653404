import Foundation
import Logging
import PodNetwork
import Testing
import TestSupport

/// The host side of pod networking without a VM: what is read from the namespace, and that only what
/// cocoon added is ever removed.
@Suite(.serialized, .enabled(if: VethPair.unavailableReason == nil, Comment(rawValue: VethPair.unavailableReason ?? "")))
struct PodNetworkAttachTests {
    let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    @Test func attachCarriesWhatCNIConfiguredAndDetachRestoresIt() throws {
        let net = try VethPair(name: "cocoon-a\(getpid() % 10000)", subnet: 10)
        defer { net.destroy() }
        let before = net.podState()
        let network = try PodNetwork.attach(namespacePath: net.podPath, logger: logger)
        let eth0 = try #require(network.interfaces.first)
        #expect(network.interfaces.count == 1 && eth0.name == "eth0" && eth0.tapName == "cocoon-tap0")
        #expect(Set(eth0.addresses.map(\.description)) == ["\(net.podV4)/24", "\(net.podV6)/64"], "no link-local address")
        // The default routes; not the ones the kernel made from the addresses.
        #expect(network.routes.map { "\($0.route.destination?.description ?? "default") \($0.route.gateway?.description ?? "")" }.sorted()
                == ["default \(net.peerV4)", "default \(net.peerV6)"])
        let filters = VethPair.shell("tc -n \(net.pod) filter show dev eth0 ingress").1
        #expect(filters.contains("Egress Redirect to device cocoon-tap0"), "\(filters)")
        network.detach()
        network.detach()
        #expect(net.podState() == before)
    }

    @Test func aQdiscSomeoneElseAddedIsRefusedAndKept() throws {
        let net = try VethPair(name: "cocoon-q\(getpid() % 10000)", subnet: 11)
        defer { net.destroy() }
        #expect(VethPair.shell("tc -n \(net.pod) qdisc add dev eth0 ingress").0 == 0)
        let before = net.podState()
        let error = #expect(throws: PodNetworkError.self) { try PodNetwork.attach(namespacePath: net.podPath, logger: logger) }
        #expect(error?.code == .alreadyExists)
        #expect(error?.message.contains("eth0 already has an ingress qdisc") == true, "\(String(describing: error))")
        #expect(net.podState() == before, "the existing qdisc stays; no tap is left")
    }
}
